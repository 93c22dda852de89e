/** The per-client share rules of the hosted cache (src/hostedcache/shares.ts, protocol/pchc.md "Fair shares"). */
import t from 'tap';
import { Shares, type ShareStore } from '../../src/hostedcache/shares.js';

/** A store that holds what the ledger admits and settles, with `inUse` bytes of segments others fetched. */
function fakeStore(limitBytes: number, inUse = 0) {
  const held = new Map<string, number>();
  const evicted: string[] = [];
  const store: ShareStore & { held: Map<string, number>; evicted: string[] } = {
    held,
    evicted,
    usage: () => ({ bytes: inUse + [...held.values()].reduce((a, b) => a + b, 0), limitBytes }),
    evictSegment: async (id) => {
      evicted.push(id.toString('hex'));
      return held.delete(id.toString('hex'));
    },
  };
  return store;
}

const hex = (k: number) => k.toString(16).padStart(64, '0');

async function pull(s: Shares, store: ReturnType<typeof fakeStore>, client: string, k: number, bytes = 10) {
  const ok = await s.admit(client, hex(k), bytes);
  if (ok) {
    store.held.set(hex(k), bytes);
    s.settle(hex(k), true);
  }
  return ok;
}

t.test('a client beyond its share loses its own oldest; the largest holder gives way to the others', async (t) => {
  const store = fakeStore(800); // share 100 (10 records), unasked part 400
  const s = new Shares(store);
  for (let k = 0; k < 15; k++) t.ok(await pull(s, store, 'flooder', k));
  t.equal(s.heldBy('flooder'), 100, 'at most its share');
  t.same(store.evicted, [0, 1, 2, 3, 4].map(hex), 'its own oldest went');
  // Four more clients fill the unasked part (400): each admission past it evicts the largest holder's oldest.
  for (let c = 0; c < 4; c++) for (let k = 0; k < 10; k++) await pull(s, store, `honest${c}`, 100 + c * 10 + k);
  t.equal(s.stats().unaskedBytes, 400, 'the unasked part is full, not over');
  const holdings = ['flooder', 'honest0', 'honest1', 'honest2', 'honest3'].map((c) => s.heldBy(c));
  t.ok(Math.max(...holdings) - Math.min(...holdings) <= 20, `holdings evened out: ${holdings.join(' ')}`);
  t.ok(await pull(s, store, 'honest4', 999));
  t.equal(s.heldBy('honest4'), 10, 'a newcomer gets in');
  t.equal(s.stats().unaskedBytes, 400);
});

t.test('a segment another client asked for leaves the ledger; its owner asking does not count', async (t) => {
  const store = fakeStore(800);
  const s = new Shares(store);
  await pull(s, store, 'a', 1);
  s.asked(hex(1), 'a');
  t.ok(s.isUnasked(hex(1)), 'the offering client itself does not make it in use');
  s.asked(hex(1), 'b');
  t.notOk(s.isUnasked(hex(1)));
  for (let k = 2; k < 40; k++) await pull(s, store, 'a', k);
  t.ok(store.held.has(hex(1)), 'a segment in use is never evicted by the ledger');
});

t.test(
  'unasked pulls do not evict in-use segments that fit in the protected half; refused when nothing can go',
  async (t) => {
    // 400 of 800 bytes are segments in use: unasked segments fill the rest, then evict each other.
    const store = fakeStore(800, 400);
    const s = new Shares(store);
    for (let c = 0; c < 8; c++) for (let k = 0; k < 5; k++) t.ok(await pull(s, store, `c${c}`, c * 100 + k));
    t.equal(store.usage().bytes, 800);
    t.ok(await pull(s, store, 'c9', 999), 'room is made from unasked segments');
    t.equal(store.usage().bytes, 800, 'within the limit without touching the segments in use');
    // Everything evictable is still being pulled: a new pull is refused.
    const busy = new Shares(fakeStore(80));
    t.ok(await busy.admit('x', hex(1), 10));
    t.ok(await busy.admit('y', hex(2), 30));
    t.notOk(await busy.admit('z', hex(3), 10), 'refused: the unasked part is full of pulls in progress');
    t.equal(busy.stats().refused, 1);
  },
);
