#!/usr/bin/env node
// The `ferry` command. TypeScript runs through tsx's loader, so there is no build step to go stale.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
