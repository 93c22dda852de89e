/** A peer on port 80 (a Windows hosted cache or peer: ContentDownloadConnectPort) is a valid host:port. */
import t from 'tap';
import { RetrievalClient, PeerError } from '../../src/retrieval/client.js';
import { nullLogger } from '../../src/util/log.js';

t.test('host:80 is accepted as a peer address (the URL parser elides the default port)', async (t) => {
  const c = new RetrievalClient({ logger: nullLogger, probation: false });
  t.teardown(() => c.close());
  // Nothing listens on 127.0.0.1:80 here (or something else does): the request is attempted either way.
  const err = await c.getSegmentList({ peer: '127.0.0.1:80', segmentIds: [Buffer.alloc(32)] }).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (err !== undefined) {
    t.ok(err instanceof PeerError);
    t.notMatch((err as Error).message, /must be host:port/, `attempted: ${(err as Error).message}`);
  }
  for (const bad of ['127.0.0.1', '127.0.0.1:80/x', 'u@127.0.0.1:80', '127.0.0.1:80?q']) {
    const e = await c.getSegmentList({ peer: bad, segmentIds: [Buffer.alloc(32)] }).then(
      () => undefined,
      (x: unknown) => x,
    );
    t.match((e as Error | undefined)?.message, /must be host:port/, `${bad} refused`);
  }
});
