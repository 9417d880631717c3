// A small protobuf reader for the few messages of sidero.discovery.client (affiliate.proto):
// Affiliate, KubeSpan, IPPrefix, ControlPlane and Endpoint. Unknown fields are kept by number,
// so fields of ours that Talos does not know (1000 and up) reach the mesh grid.

const text = new TextDecoder("utf-8", { fatal: false });

function varint(buf, pos) {
  let value = 0;
  let scale = 1;
  for (;;) {
    if (pos >= buf.length) throw new Error("truncated varint");
    const b = buf[pos++];
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
    if (scale > 2 ** 63) throw new Error("varint too long");
  }
}

// Map of field number -> array of values (numbers for varints, Uint8Array for bytes).
export function readMessage(buf) {
  const fields = new Map();
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = varint(buf, pos);
    const field = Math.floor(key / 8);
    const wire = key % 8;
    let value;
    if (wire === 0) {
      [value, pos] = varint(buf, pos);
    } else if (wire === 2) {
      let size;
      [size, pos] = varint(buf, pos);
      if (pos + size > buf.length) throw new Error("truncated field");
      value = buf.subarray(pos, pos + size);
      pos += size;
    } else if (wire === 1 || wire === 5) {
      pos += wire === 1 ? 8 : 4;
      continue;
    } else {
      throw new Error(`unsupported wire type ${wire}`);
    }
    if (!fields.has(field)) fields.set(field, []);
    fields.get(field).push(value);
  }
  return fields;
}

const first = (fields, n) => (fields.get(n) || [])[0];
const str = (fields, n) => (first(fields, n) ? text.decode(first(fields, n)) : "");
const all = (fields, n) => fields.get(n) || [];

export function formatIP(bytes) {
  if (!bytes || bytes.length === 0) return "";
  if (bytes.length === 4) return Array.from(bytes).join(".");
  if (bytes.length !== 16) return `(${bytes.length}-byte address)`;
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = [-1, 0];
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > best[1]) best = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  if (best[1] < 2) return groups.join(":");
  const head = groups.slice(0, best[0]).join(":");
  const tail = groups.slice(best[0] + best[1]).join(":");
  return `${head}::${tail}`;
}

function prefix(buf) {
  const f = readMessage(buf);
  return `${formatIP(first(f, 1))}/${first(f, 2) || 0}`;
}

export function decodeAffiliate(buf) {
  const f = readMessage(buf);
  const ks = first(f, 7) ? readMessage(first(f, 7)) : null;
  const cp = first(f, 8) ? readMessage(first(f, 8)) : null;
  const extra = new Map([...f].filter(([n]) => n >= 1000));
  return {
    nodeId: str(f, 1),
    addresses: all(f, 2).map(formatIP),
    hostname: str(f, 3),
    nodename: str(f, 4),
    machineType: str(f, 5),
    os: str(f, 6),
    kubespan: ks && {
      publicKey: str(ks, 1),
      address: formatIP(first(ks, 2)),
      routes: all(ks, 3).map(prefix),
      excluded: all(ks, 4).map(prefix),
    },
    apiServerPort: cp ? first(cp, 1) || 0 : null,
    extra,
  };
}

export function decodeEndpoint(buf) {
  const f = readMessage(buf);
  const ip = formatIP(first(f, 1));
  const port = first(f, 2) || 0;
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

// --- mesh health -------------------------------------------------------------------------
// Our agents publish their view of their WireGuard peers in Affiliate field 1000 (Talos skips
// it as unknown): MeshHealth { 1: observed_at (Unix s), 2: peers (8 bytes each), 3: omitted }.
// Each peer entry: the first 4 bytes of its raw WireGuard public key, a state byte (0 unknown,
// 1 up, 2 down; anything else unknown), a flags byte (bit 0 receiving, bit 1 session) and the
// seconds since its last handshake as big-endian uint16 (0xFFFF never). Only this function
// knows the layout (membership/health.py is the agent's side of it).
export const MESH_HEALTH_FIELD = 1000;
const MESH_ENTRY = 8;
const MESH_STATES = ["unknown", "up", "down"];

export function decodeMeshHealth(record) {
  const fields = record.extra.get(MESH_HEALTH_FIELD);
  if (!fields) return null;
  // A message field sent twice merges; its scalar and bytes fields: the last one wins.
  const f = readMessage(fields[fields.length - 1]);
  const packed = all(f, 2).at(-1) || new Uint8Array();
  const peers = [];
  for (let at = 0; at + MESH_ENTRY <= packed.length; at += MESH_ENTRY) {
    const e = packed.subarray(at, at + MESH_ENTRY);
    const age = (e[6] << 8) | e[7];
    peers.push({
      keyId: keyIdHex(e.subarray(0, 4)),
      state: MESH_STATES[e[4]] || "unknown",
      receiving: Boolean(e[5] & 1),
      session: Boolean(e[5] & 2),
      handshakeAge: age === 0xffff ? null : age,
    });
  }
  return { observedAt: all(f, 1).at(-1) || 0, omitted: all(f, 3).at(-1) || 0, peers };
}

export const keyIdHex = (bytes) => Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join("");
