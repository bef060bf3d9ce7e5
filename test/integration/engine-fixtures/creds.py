# Checks its own credentials every round: uid/gid/groups/no_new_privs/capabilities must stay what
# they were at start. Prints "tick N" while healthy, "FAIL <why>" and exits 3 otherwise.
import os, sys, time

def caps():
    with open('/proc/self/status') as f:
        return {l.split(':')[0]: l.split(':')[1].strip() for l in f if l.startswith(('Cap', 'NoNewPrivs'))}

start = (os.getresuid(), os.getresgid(), sorted(os.getgroups()), caps())
tick = 0
while True:
    now = (os.getresuid(), os.getresgid(), sorted(os.getgroups()), caps())
    if now != start:
        print('FAIL creds', start, now, flush=True)
        sys.exit(3)
    tick += 1
    if tick % 10 == 0:
        print('tick', tick, now[0], now[1], flush=True)
    time.sleep(0.01)
