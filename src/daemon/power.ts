/**
 * Whether the machine runs on battery, from Linux's /sys/class/power_supply (the directory is
 * injectable for tests). Like Delivery Optimization's "no uploads while on battery", the daemon
 * stops serving peers while this says `battery`. A machine that reports nothing (desktops,
 * servers, other systems) is `unknown`, which serves.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

export type PowerSource = 'ac' | 'battery' | 'unknown';

export const POWER_SUPPLY_DIR = '/sys/class/power_supply';

async function attr(dir: string, name: string): Promise<string | undefined> {
  try {
    return (await readFile(join(dir, name), 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/**
 * `ac` when any mains/USB supply is online; `battery` when there is a battery and it reports
 * Discharging (and no supply is online); otherwise `unknown`.
 */
export async function readPowerSource(dir = POWER_SUPPLY_DIR): Promise<PowerSource> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 'unknown';
  }
  let discharging = false;
  for (const n of names.sort()) {
    const d = join(dir, n);
    const type = (await attr(d, 'type'))?.toLowerCase();
    if (type === 'mains' || type === 'usb' || type === 'usb_c' || type === 'usb_pd') {
      if ((await attr(d, 'online')) === '1') return 'ac';
    } else if (type === 'battery') {
      const status = (await attr(d, 'status'))?.toLowerCase();
      if (status === 'discharging') discharging = true;
    }
  }
  return discharging ? 'battery' : 'unknown';
}

/**
 * Keeps the last reading fresh in the background (the retrieval server asks on every request,
 * synchronously). `current()` is the last reading; `refresh()` reads again now.
 */
export class PowerMonitor {
  private value: PowerSource = 'unknown';
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly dir = POWER_SUPPLY_DIR,
    private readonly everyMs = 10_000,
  ) {}

  current(): PowerSource {
    return this.value;
  }

  async refresh(): Promise<PowerSource> {
    this.value = await readPowerSource(this.dir);
    return this.value;
  }

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => {
      void this.refresh();
    }, this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
