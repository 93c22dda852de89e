/** DampingTable bounds: the least recently observed segment goes first, responders per segment are capped. */
import t from 'tap';
import { DampingTable, DAMPING_THRESHOLD } from '../../src/discovery/damping.js';

const key = (i: number) => i.toString(16).toUpperCase().padStart(64, '0');

t.test('a full table forgets the segment observed least recently, not the one added first', async (t) => {
  const d = new DampingTable();
  for (let i = 0; i < 4096; i++) d.observe(key(i), 'urn:uuid:a', 1, true);
  d.observe(key(0), 'urn:uuid:b', 1, true); // segment 0 observed again: now the most recent
  d.observe(key(5000), 'urn:uuid:a', 1, true);
  t.equal(d.seenCount(key(0)), 2, 'segment 0 kept, with both responders');
  t.equal(d.seenCount(key(1)), 0, 'segment 1 (least recent) forgotten');
  t.equal(d.seenCount(key(5000)), 1);
  d.observe(key(5001), 'urn:uuid:a', 1, true);
  t.equal(d.seenCount(key(2)), 0, 'then segment 2');
  t.equal(d.seenCount(key(3)), 1);
  for (let i = 3; i < 4096; i++) d.observe(key(i), 'urn:uuid:c', 1, true); // 3..4095 now the most recent
  d.observe(key(5002), 'urn:uuid:a', 1, true);
  t.equal(d.seenCount(key(0)), 0, 'segment 0 (observed before 5000 and 5001) goes next');
  t.equal(d.seenCount(key(5000)), 1);
  d.observe(key(5003), 'urn:uuid:a', 1, true);
  t.equal(d.seenCount(key(5000)), 0, 'then 5000');
  t.equal(d.seenCount(key(5001)), 1);
  t.equal(d.seenCount(key(3)), 2, 'segment 3 kept, with both responders');
});

t.test('at most 64 responders per segment; full-segment replies silence us from the threshold on', async (t) => {
  const d = new DampingTable();
  for (let i = 0; i < 100; i++) d.observe(key(1), `urn:uuid:${i}`, 1, false);
  t.equal(d.seenCount(key(1)), 64);
  // v1: replies announcing fewer blocks than we hold are not full-segment replies.
  t.equal(
    d.shouldAnswer(key(1), 2, () => 0.99),
    false,
    'p = 0.33 branch: 0.99 says no',
  );
  t.equal(
    d.shouldAnswer(key(1), 2, () => 0.1),
    true,
    'p = 0.33 branch: 0.1 says yes',
  );
  t.equal(
    d.shouldAnswer(key(1), 1, () => 0.1),
    false,
    'all 64 announced our 1 block: silent',
  );
  for (let i = 0; i < DAMPING_THRESHOLD; i++) d.observe(key(2), `urn:uuid:${i}`, 1, i % 2 === 0);
  t.equal(
    d.shouldAnswer(key(2), 7, () => 0.1),
    true,
    'five complete of ten: not yet silent',
  );
  for (let i = 1; i < DAMPING_THRESHOLD; i += 2) d.observe(key(2), `urn:uuid:${i}`, 1, true);
  t.equal(
    d.shouldAnswer(key(2), 7, () => 0.1),
    false,
    'ten complete: silent',
  );
});
