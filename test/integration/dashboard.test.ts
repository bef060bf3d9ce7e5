// The coordinator's web dashboard in a real headless browser (Debian's chromium through
// puppeteer-core), in a real lab: a workload runs and moves live h1 -> h2; the operator logs in
// through `ferry dashboard --json`'s one-time link and sees the lab's hosts, the workload where
// it runs, the migration with one bar pair per pre-copy round and its downtime by phase; a second
// migration shows up on the open page without a reload. The certificate chain is checked against
// the lab's CA (curl --cacert), and the browser trusts exactly that certificate's key. A request
// without a session, and a login link used twice, are refused.
//
// The browser runs inside the lab's client namespace (the operator's seat on the management
// network), as every lab client does; puppeteer talks to it over a pipe, not a socket.
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LabStatus } from '../../deploy/lab/lab.ts';
import type { FleetJob } from '../../shared/fleet.ts';
import type { MigrationView } from '../../shared/migration.ts';
import type { DashboardLogin } from '../../shared/protocol.ts';
import { ferry, ferryJson } from './helpers/cli.ts';
import { freshLab, labEnv } from './helpers/lab.ts';
import { inClient } from './helpers/lab-clients.ts';
import { expectRunsOnceOn, runOnLab, status, type LabWorkload } from './helpers/lab-workloads.ts';

const execFileP = promisify(execFile);
const env = labEnv('itdash');
const CHROMIUM = '/usr/bin/chromium';
const artifacts = mkdtempSync(path.join(tmpdir(), 'ferry-dashboard-'));

let lab: LabStatus;
let browser: Browser;
let caFile: string;
let w: LabWorkload;
let first: MigrationView;

/** The browser's way into the lab: chromium started inside the client namespace. */
function chromiumInLab(ns: string): string {
  const wrapper = path.join(artifacts, 'chromium-in-lab.sh');
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${ns} ${CHROMIUM} "$@"\n`);
  chmodSync(wrapper, 0o755);
  return wrapper;
}

/** base64 SHA-256 of a certificate's public key: what chromium's SPKI allow-list takes. */
async function spkiHash(certFile: string): Promise<string> {
  const { stdout } = await execFileP('sh', ['-c', `openssl x509 -in '${certFile}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`]);
  return stdout.trim();
}

/** An HTTPS request from the client namespace, the server's chain checked against the lab's CA: its status code. */
async function curlStatus(url: string, extra: string[] = []): Promise<number> {
  return Number(await inClient(lab.clientNamespace, ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', caFile, ...extra, url]));
}

const login = (): Promise<DashboardLogin> => ferryJson<DashboardLogin>(['dashboard'], env);

/** Distinct colours, and the share of dark (text) pixels, of a PNG, counted on a canvas in a blank page. */
async function pixels(png: string, probe: Page): Promise<{ width: number; height: number; colours: number; dark: number; near: Record<string, number> }> {
  return probe.evaluate(async (b64: string) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width;
    c.height = img.height;
    const ctx = c.getContext('2d')!;
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    const colours = new Set<number>();
    let dark = 0;
    // The charts' colours (app.css): dirty rate, bandwidth.
    const targets: Record<string, [number, number, number]> = { dirty: [0xd9, 0x82, 0x2b], bandwidth: [0x2f, 0x6f, 0xdd] };
    const near: Record<string, number> = { dirty: 0, bandwidth: 0 };
    for (let i = 0; i < d.length; i += 4) {
      colours.add((d[i]! << 16) | (d[i + 1]! << 8) | d[i + 2]!);
      if (d[i]! + d[i + 1]! + d[i + 2]! < 200) dark++;
      for (const [k, [r, g, b]] of Object.entries(targets)) if (Math.abs(d[i]! - r) + Math.abs(d[i + 1]! - g) + Math.abs(d[i + 2]! - b) < 30) near[k]!++;
    }
    return { width: c.width, height: c.height, colours: colours.size, dark: dark / (d.length / 4), near };
  }, png);
}

describe('web dashboard', () => {
  beforeAll(async () => {
    lab = await freshLab(env, 2);
    caFile = path.join(lab.dir, 'pki', 'ca.crt');
    const pin = await spkiHash(path.join(lab.dir, 'pki', 'coordinator.c1.crt'));
    browser = await puppeteer.launch({
      executablePath: chromiumInLab(lab.clientNamespace),
      headless: true,
      pipe: true,
      // Root needs --no-sandbox; the coordinator's certificate (verified against the lab's CA by curl below) is trusted by its key alone.
      args: ['--no-sandbox', `--ignore-certificate-errors-spki-list=${pin}`],
    });
    w = await runOnLab(env, 'h1', 'memwriter', 'dash', ['32', '8', 'random']);
    while (status(w)?.phase !== 'running') await new Promise((r) => setTimeout(r, 100));
    // A budget it cannot meet: pre-copy runs its rounds up to the limit, so the chart has several.
    const r = await ferry(['migrate', 'dash', '--to', 'h2', '--json', '--downtime-budget', '1', '--max-rounds', '3'], env);
    first = JSON.parse(r.stdout) as MigrationView;
    expect(first.outcome, first.error?.message).toBe('completed');
    await expectRunsOnceOn(env, w, 'h2');
  });

  afterAll(async () => {
    await browser?.close();
    await ferry(['lab', 'down'], env);
  });

  it('lab status names the dashboard; its certificate chains to the lab CA; without a session every request is 401', async () => {
    expect(lab.dashboardUrl).toBe('https://10.78.0.1:7480/');
    for (const p of ['', 'api/state', 'api/events', `api/migrations/${first.id}`, 'app.js']) expect(await curlStatus(`${lab.dashboardUrl}${p}`), p).toBe(401);
    // A made-up session and a made-up token are no better; writing is refused outright.
    expect(await curlStatus(`${lab.dashboardUrl}api/state`, ['-H', `Cookie: __Host-ferry_session=${'A'.repeat(43)}`])).toBe(401);
    expect(await curlStatus(`${lab.dashboardUrl}login?token=${'A'.repeat(43)}`)).toBe(401);
    expect(await curlStatus(`${lab.dashboardUrl}api/state`, ['-X', 'POST'])).toBe(405);
  });

  it('a login link works once: it sets an HttpOnly, Secure, SameSite=Strict session, and is refused the second time', async () => {
    const l = await login();
    expect(l.url.startsWith(`${lab.dashboardUrl}login?token=`)).toBe(true);
    const ctx = await browser.createBrowserContext();
    const page = await ctx.newPage();
    const res = await page.goto(l.url);
    expect(res?.status()).toBe(200);
    expect(page.url()).toBe(lab.dashboardUrl);
    const [cookie] = await ctx.cookies();
    expect(cookie).toMatchObject({ name: '__Host-ferry_session', httpOnly: true, secure: true, sameSite: 'Strict', path: '/' });
    expect(await page.evaluate(() => document.cookie)).toBe('');
    // The same link again, from another browser profile: refused.
    const other = await browser.createBrowserContext();
    const again = await (await other.newPage()).goto(l.url);
    expect(again?.status()).toBe(401);
    expect(await other.cookies()).toEqual([]);
    // A page's own fetch without its cookie is refused too.
    expect(await page.evaluate(async () => (await fetch('/api/state', { credentials: 'omit' })).status)).toBe(401);
    await Promise.all([ctx.close(), other.close()]);
  });

  it("shows the lab's hosts, the workload where it runs and the migration with its charts; a drain and its migration appear live", async () => {
    const ctx = await browser.createBrowserContext();
    const page = await ctx.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push((e as Error).message));
    await page.goto((await login()).url);

    // Hosts: both alive, with their memory and CPUs as the coordinator's view has them.
    const hosts = await ferryJson<{ name: string; facts: { cpu: { count: number }; memory: { totalBytes: number } } }[]>(['hosts'], env);
    for (const h of hosts) {
      const row = await page.waitForSelector(`#hosts tr[data-host="${h.name}"][data-alive="true"]`);
      expect(await row!.$eval('td.cpu', (e) => Number(e.getAttribute('data-cpus')))).toBe(h.facts.cpu.count);
      expect(await row!.$eval('td.mem', (e) => Number(e.getAttribute('data-total')))).toBe(h.facts.memory.totalBytes);
      expect(await row!.$eval('td.mem', (e) => e.textContent)).toMatch(/GiB of/);
    }
    expect((await page.$$('#hosts tr[data-host]')).length).toBe(2);
    // The workload on h2, where ferry ps says it runs.
    await page.waitForSelector('#workloads tr[data-workload="dash"][data-host="h2"][data-state="running"]');

    // The migration, its outcome, one bar pair per round, and its downtime by phase.
    const card = `#migrations article.migration[data-id="${first.id}"]`;
    await page.waitForSelector(`${card}[data-outcome="completed"]`);
    expect(first.rounds.length).toBeGreaterThan(0);
    expect(await page.$$eval(`${card} svg.rounds g.round`, (gs) => gs.map((g) => Number(g.getAttribute('data-round'))))).toEqual(first.rounds.map((r) => r.round));
    for (const series of ['dirty', 'bandwidth']) {
      const values = await page.$$eval(`${card} svg.rounds rect[data-series="${series}"]`, (rs) => rs.map((r) => Number(r.getAttribute('data-value'))));
      expect(values.map(Math.round)).toEqual(first.rounds.map((r) => Math.round(Number(series === 'dirty' ? r.dirtyRateBps : r.bandwidthBps))));
    }
    const phases = await page.$$eval(`${card} svg.downtime rect[data-phase]`, (rs) => rs.map((r) => r.getAttribute('data-phase')));
    expect(phases).toEqual(expect.arrayContaining(['freeze', 'transfer', 'restore']));
    expect(Number(await page.$eval(`${card} svg.downtime`, (s) => s.getAttribute('data-downtime-ms')))).toBeCloseTo(first.downtimeMs!, 0);

    // Screenshot: a real render, with the hosts table's text and the chart's two bar colours in it.
    const shot = path.join(artifacts, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    const probe = await ctx.newPage();
    const whole = await pixels(await page.screenshot({ encoding: 'base64', fullPage: true }), probe);
    expect(whole.width).toBe(1280);
    expect(whole.colours).toBeGreaterThan(50);
    // The probe tab took the front: the page goes back there (a hidden tab may not render), and a
    // live update can be re-rendering the element this very moment, so wait until it has a size.
    await page.bringToFront();
    // Measured in the same evaluation that finds the element sized, so that a re-render in between
    // cannot hand back an element still being built.
    const clipOf = async (selector: string) =>
      (
        await page.waitForFunction((s: string) => {
          const r = document.querySelector(s)?.getBoundingClientRect();
          return r && r.width > 0 && r.height > 0 ? { x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width, height: r.height } : false;
        }, {}, selector)
      ).jsonValue() as Promise<{ x: number; y: number; width: number; height: number }>;
    const hostsShot = await pixels(await page.screenshot({ encoding: 'base64', clip: await clipOf('#hosts table'), captureBeyondViewport: true }), probe);
    expect(hostsShot.dark).toBeGreaterThan(0.005);
    const chartShot = await pixels(await page.screenshot({ encoding: 'base64', clip: await clipOf(`${card} svg.rounds`), captureBeyondViewport: true }), probe);
    expect(chartShot.near.dirty).toBeGreaterThan(20);
    expect(chartShot.near.bandwidth).toBeGreaterThan(20);
    await probe.close();

    // Live: draining h2 moves the workload back to h1; the drain, its migration and the cordon show up on the open page, without a reload.
    await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));
    const draining = ferry(['drain', 'h2', '--json'], env);
    await page.waitForSelector('#migrations article.migration[data-from="h2"][data-to="h1"]', { timeout: 60_000 });
    const drain = await draining;
    const job = JSON.parse(drain.stdout) as FleetJob;
    expect(drain.code, drain.stderr).toBe(0);
    expect(job.items.map((i) => [i.workload, i.state])).toEqual([['dash', 'moved']]);
    await page.waitForSelector(`#fleet li.fleet-job[data-id="${job.id}"][data-state="done"]`, { timeout: 30_000 });
    await page.waitForSelector(`#migrations article.migration[data-id="${job.items[0]!.migrationId}"][data-outcome="completed"]`, { timeout: 30_000 });
    await page.waitForSelector('#workloads tr[data-workload="dash"][data-host="h1"]', { timeout: 30_000 });
    await page.waitForSelector('#hosts tr[data-host="h2"][data-cordoned="true"]', { timeout: 30_000 });
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
    expect(problems).toEqual([]);
    expect(await page.$eval('#connection', (e) => e.textContent)).toBe('live');
    await ctx.close();
  });
});
