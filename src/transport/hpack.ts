/**
 * HPACK (RFC 7541), the header compression of HTTP/2: what fedsim's own gRPC client needs.
 *
 * - Decoding is complete: indexed fields, literals with and without indexing, never-indexed
 *   literals, dynamic table size updates, the dynamic table with eviction, Huffman strings.
 *   A peer may use any of them, and node's nghttp2 uses most.
 * - Encoding sends literals without indexing, names indexed from the static table where it
 *   has them, values as plain octets (no Huffman). That keeps no state to share with the
 *   peer; a gRPC request's headers are a few dozen bytes either way, and the constant ones
 *   are encoded once per connection.
 */

/** RFC 7541 Appendix A. Index 1 is the first entry. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
  ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];

/**
 * RFC 7541 Appendix B: the Huffman code's length in bits for each symbol 0–255 and EOS (256).
 * The code is canonical (codes of one length are consecutive, in symbol order, and shorter
 * codes come first), so these lengths determine every code.
 */
const HUFFMAN_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6,
  12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13,
  19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7,
  7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23,
  23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22,
  23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27,
  27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27,
  26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

const EOS = 256;

/** Each symbol's canonical code, from the lengths (RFC 7541 Appendix B's codes). */
export function huffmanCodes(): { code: number; length: number }[] {
  const order = HUFFMAN_LENGTHS.map((length, symbol) => ({ symbol, length })).sort((a, b) => a.length - b.length || a.symbol - b.symbol);
  const out: { code: number; length: number }[] = new Array(HUFFMAN_LENGTHS.length);
  let code = 0;
  let prev = order[0].length;
  for (const { symbol, length } of order) {
    code *= 2 ** (length - prev);
    prev = length;
    out[symbol] = { code, length };
    code++;
  }
  return out;
}

/**
 * The decoding tree as an array: node n's children are at [2n] (bit 0) and [2n+1] (bit 1);
 * a child ≥ 0 is an inner node, a child < 0 is the leaf of symbol -child-1.
 */
let tree: Int32Array | null = null;

function huffmanTree(): Int32Array {
  if (tree) return tree;
  const t = new Int32Array(2 * 512); // a full binary tree with 257 leaves has 256 inner nodes
  let nodes = 1;
  const codes = huffmanCodes();
  for (let symbol = 0; symbol < codes.length; symbol++) {
    const { code, length } = codes[symbol];
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit--) {
      const b = Math.floor(code / 2 ** bit) % 2;
      const slot = 2 * node + b;
      if (bit === 0) t[slot] = -symbol - 1;
      else {
        if (t[slot] === 0) t[slot] = nodes++;
        node = t[slot];
      }
    }
  }
  tree = t;
  return t;
}

export class HpackError extends Error {
  constructor(message: string) {
    super(`HPACK: ${message}`);
    this.name = 'HpackError';
  }
}

/** Decodes a Huffman-coded string (RFC 7541 §5.2): padding must be under 8 bits, all ones. */
export function huffmanDecode(src: Uint8Array, start: number, end: number): string {
  const t = huffmanTree();
  const out: number[] = [];
  let node = 0;
  let depth = 0; // bits since the last symbol
  let ones = true; // ...all of them ones
  for (let i = start; i < end; i++) {
    const byte = src[i];
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      const next = t[2 * node + b];
      depth++;
      if (b === 0) ones = false;
      if (next < 0) {
        const symbol = -next - 1;
        if (symbol === EOS) throw new HpackError('a Huffman string contains EOS');
        out.push(symbol);
        node = 0;
        depth = 0;
        ones = true;
      } else node = next;
    }
  }
  if (depth > 7 || !ones) throw new HpackError('a Huffman string ends in padding that is not a prefix of EOS');
  return Buffer.from(out).toString('latin1');
}

/** Encodes with the Huffman code (tests, and peers' header blocks built in tests). */
export function huffmanEncode(s: string): Buffer {
  const codes = huffmanCodes();
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const byte of Buffer.from(s, 'latin1')) {
    const { code, length } = codes[byte];
    for (let bit = length - 1; bit >= 0; bit--) {
      acc = (acc << 1) | (Math.floor(code / 2 ** bit) % 2);
      if (++bits === 8) {
        out.push(acc);
        acc = 0;
        bits = 0;
      }
    }
  }
  if (bits > 0) out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 0xff);
  return Buffer.from(out);
}

/** A header list as decoded: names lower-case (HTTP/2 requires it), in order, repeats kept. */
export type HeaderList = (readonly [name: string, value: string])[];

/** The first value of a header in a decoded list. */
export function headerValue(fields: HeaderList, name: string): string | undefined {
  for (const [n, v] of fields) if (n === name) return v;
  return undefined;
}

/**
 * Decodes header blocks, keeping the dynamic table across them (one decoder per
 * connection and direction). `maxTableSize` is what this side allowed in its SETTINGS
 * (HEADER_TABLE_SIZE; 4096 unless set otherwise).
 */
export class HpackDecoder {
  /** Newest first. */
  private dynamic: [string, string][] = [];
  private size = 0;
  private limit: number;

  constructor(private readonly maxTableSize = 4096) {
    this.limit = maxTableSize;
  }

  /** Decodes one complete header block (HEADERS plus any CONTINUATIONs, joined). */
  decode(block: Uint8Array): HeaderList {
    const out: HeaderList = [];
    let i = 0;
    const n = block.length;
    let fieldsSeen = false;
    const int = (prefixBits: number): number => {
      const max = (1 << prefixBits) - 1;
      let v = block[i++] & max;
      if (v < max) return v;
      let scale = 1;
      for (;;) {
        if (i >= n) throw new HpackError('a header block ends inside an integer');
        const b = block[i++];
        v += (b & 0x7f) * scale;
        scale *= 128;
        if (v > 0xffffffff) throw new HpackError('an integer is too large');
        if ((b & 0x80) === 0) return v;
      }
    };
    const str = (): string => {
      if (i >= n) throw new HpackError('a header block ends before a string');
      const huffman = (block[i] & 0x80) !== 0;
      const len = int(7);
      if (i + len > n) throw new HpackError('a string runs past the end of its header block');
      const s = huffman ? huffmanDecode(block, i, i + len) : Buffer.isBuffer(block) ? block.toString('latin1', i, i + len) : Buffer.from(block.buffer, block.byteOffset + i, len).toString('latin1');
      i += len;
      return s;
    };
    while (i < n) {
      const b = block[i];
      if (b & 0x80) {
        out.push(this.entry(int(7)));
        fieldsSeen = true;
      } else if (b & 0x40) {
        const index = int(6);
        const name = index === 0 ? str() : this.entry(index)[0];
        const value = str();
        out.push([name, value]);
        this.add(name, value);
        fieldsSeen = true;
      } else if (b & 0x20) {
        // A table size update: only at the start of a block, and within what we allowed.
        if (fieldsSeen) throw new HpackError('a dynamic table size update after a header field');
        const size = int(5);
        if (size > this.maxTableSize) throw new HpackError(`a dynamic table size update to ${size}, over the ${this.maxTableSize} allowed`);
        this.limit = size;
        this.evict(0);
      } else {
        // Literal without indexing (0000) or never indexed (0001): the same to a decoder.
        const index = int(4);
        const name = index === 0 ? str() : this.entry(index)[0];
        out.push([name, str()]);
        fieldsSeen = true;
      }
    }
    return out;
  }

  private entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError('index 0');
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1];
    const e = this.dynamic[index - STATIC_TABLE.length - 1];
    if (!e) throw new HpackError(`index ${index} is not in the table`);
    return e;
  }

  private add(name: string, value: string): void {
    const size = name.length + value.length + 32;
    this.evict(size);
    // An entry larger than the whole table empties it and is not added (RFC 7541 §4.4).
    if (size > this.limit) return;
    this.dynamic.unshift([name, value]);
    this.size += size;
  }

  private evict(room: number): void {
    while (this.size + room > this.limit && this.dynamic.length > 0) {
      const [name, value] = this.dynamic.pop()!;
      this.size -= name.length + value.length + 32;
    }
  }
}

const STATIC_NAME_INDEX = new Map<string, number>();
for (let i = STATIC_TABLE.length - 1; i >= 0; i--) STATIC_NAME_INDEX.set(STATIC_TABLE[i][0], i + 1);


/**
 * Appends header fields as literals without indexing (RFC 7541 §6.2.2), the name from the
 * static table where it is there, the value as plain octets. Names must be lower-case.
 */
export function encodeLiterals(out: number[], fields: Iterable<readonly [string, string]>): void {
  for (const [name, value] of fields) {
    const b = Buffer.allocUnsafe(literalBytes(name, value));
    const end = writeLiteral(b, 0, name, value);
    for (let i = 0; i < end; i++) out.push(b[i]);
  }
}

/**
 * One field as encodeLiterals encodes it, written into `buf` at `at` (it must have room:
 * literalBytes); returns the position after it. A gRPC call's header block is written this
 * way, straight into its bytes: safe mode's metadata (about 180 characters a request) went
 * through an array of numbers and a copy out of it.
 */
export function writeLiteral(buf: Buffer, at: number, name: string, value: string): number {
  const index = STATIC_NAME_INDEX.get(name);
  if (index !== undefined) at = writeInt(buf, at, index, 4, 0x00);
  else {
    buf[at++] = 0x00;
    at = writeLatin1(buf, at, name);
  }
  return writeLatin1(buf, at, value);
}

/** The most bytes writeLiteral writes for a field. */
export const literalBytes = (name: string, value: string): number => name.length + value.length + 12;

/** A string literal without Huffman coding: its length, then each character as one byte (latin1). */
function writeLatin1(buf: Buffer, at: number, s: string): number {
  at = writeInt(buf, at, s.length, 7, 0x00);
  for (let i = 0; i < s.length; i++) buf[at++] = s.charCodeAt(i) & 0xff;
  return at;
}

function writeInt(buf: Buffer, at: number, value: number, prefixBits: number, firstByte: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    buf[at++] = firstByte | value;
    return at;
  }
  buf[at++] = firstByte | max;
  let v = value - max;
  while (v >= 128) {
    buf[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[at++] = v;
  return at;
}

/** An indexed field from the static table (":method: POST" is 3, ":scheme: http" is 6). */
export function encodeIndexed(out: number[], index: number): void {
  const b = Buffer.allocUnsafe(8);
  const end = writeInt(b, 0, index, 7, 0x80);
  for (let i = 0; i < end; i++) out.push(b[i]);
}
