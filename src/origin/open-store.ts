/**
 * Opens the object store a `--store URL` names (one case per backend). Each backend's module is
 * loaded when its scheme is asked for: loading the Azure SDK was about 40% of the CPU of every
 * `peerdist serve` and `publish` start, with or without a store (`serve --help`: 0.8 -> 0.45 CPU s).
 */
import { parseStoreUrl, type ObjectStore } from './store.js';

export interface OpenStoreOptions {
  /** Store config file with credentials (never on the command line). */
  configFile?: string;
  env?: NodeJS.ProcessEnv;
}

export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<ObjectStore> {
  const u = parseStoreUrl(url);
  switch (u.scheme) {
    case 'azblob': {
      const { AzblobStore } = await import('./store-azblob.js');
      return AzblobStore.open(u, { configFile: opts.configFile, env: opts.env });
    }
  }
}
