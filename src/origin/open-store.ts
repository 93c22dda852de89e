/** Opens the object store a `--store URL` names (one case per backend). */
import { AzblobStore } from './store-azblob.js';
import { parseStoreUrl, type ObjectStore } from './store.js';

export interface OpenStoreOptions {
  /** Store config file with credentials (never on the command line). */
  configFile?: string;
  env?: NodeJS.ProcessEnv;
}

export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<ObjectStore> {
  const u = parseStoreUrl(url);
  switch (u.scheme) {
    case 'azblob':
      return AzblobStore.open(u, { configFile: opts.configFile, env: opts.env });
  }
}
