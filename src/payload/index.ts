import type { PayloadSpec } from '../config/payload.js';
import type { PayloadCodec } from '../sim/ports.js';
import { BytesPayload } from './bytes.js';
import { StringPayload } from './string.js';

export function createPayload(spec: PayloadSpec): PayloadCodec {
  switch (spec.kind) {
    case 'string':
      return new StringPayload();
    case 'bytes':
      return new BytesPayload(spec.size);
  }
}
