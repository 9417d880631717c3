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

// --- mesh health (provisional) -------------------------------------------------------------
// The live-mesh work publishes each agent's view of its peers in an Affiliate field Talos does
// not know (1000 and up). Until its format is fixed, this reads field MESH_HEALTH_FIELD as
// repeated { 1: peer (node id or WireGuard key, string), 2: state (1 up, 2 down), 3: rtt in
// microseconds }. Only this function has to change when the real format lands.
export const MESH_HEALTH_FIELD = 1000;

export function decodeMeshHealth(record) {
  const entries = record.extra.get(MESH_HEALTH_FIELD);
  if (!entries) return null;
  return entries.map((buf) => {
    const f = readMessage(buf);
    const state = first(f, 2) || 0;
    return {
      peer: str(f, 1),
      state: state === 1 ? "up" : state === 2 ? "down" : "unknown",
      rttMs: first(f, 3) ? first(f, 3) / 1000 : null,
    };
  });
}
