import t from 'tap';
import { SEGMENT_ID_CONSTANT, blockCount, blockRange } from '../src/protocol/pccrc/types.js';

t.test('segment ID constant is UTF-16LE with terminator', async (t) => {
  t.equal(SEGMENT_ID_CONSTANT.toString('hex'), '4d0053005f005000320050005f00430041004300480049004e0047000000');
  t.equal(SEGMENT_ID_CONSTANT.length, 30);
});

t.test('block geometry', async (t) => {
  t.equal(blockCount(1, { length: 65537, blockSize: 65536 }), 2);
  t.same(blockRange(1, { length: 65537, blockSize: 65536 }, 1), [65536, 65537]);
  t.equal(blockCount(2, { length: 100000, blockSize: 100000 }), 1);
});
