/** STREAM_DATA (type 9, receiver → sender with XEN_STREAM): the back channel's bytes and their offset. */
import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  MAX_STREAM_DATA_BYTES,
  streamData,
} from '../../src/protocol/index.js';

describe('STREAM_DATA', () => {
  it('round-trips its offset and bytes, empty or full', () => {
    for (const data of [
      Buffer.alloc(0),
      Buffer.from('domain is yours'),
      Buffer.alloc(MAX_STREAM_DATA_BYTES, 7),
    ]) {
      const f = streamData({ offset: 2 ** 40 + 3, data });
      const d = new FrameDecoder();
      d.write(Buffer.concat(encodeFrame(f)));
      const got: Frame[] = [];
      for (let x = d.read(); x !== undefined; x = d.read()) got.push(x);
      expect(got).toEqual([{ type: FrameType.STREAM_DATA, offset: 2 ** 40 + 3, data }]);
    }
  });

  it('refuses more than a control payload of data, and an offset out of range', () => {
    expect(() =>
      encodeFrame(streamData({ offset: 0, data: Buffer.alloc(MAX_STREAM_DATA_BYTES + 1) })),
    ).toThrow(expect.objectContaining({ code: expect.stringMatching(/^RWAN_ERR_PROTOCOL_/) }));
    expect(() => encodeFrame(streamData({ offset: -1, data: Buffer.alloc(1) }))).toThrow(
      expect.objectContaining({ code: 'RWAN_ERR_PROTOCOL_INVALID_FIELD' }),
    );
  });
});
