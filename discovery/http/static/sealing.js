// Opening Talos-sealed affiliate records in the browser with WebCrypto; the key never leaves it.
//
// data:     AES-256-GCM, nonce(12) || ciphertext || tag(16), no associated data.
// endpoint: AES-ECB over len(pb) || pb || zero padding, one 16-byte block at a time.
// WebCrypto has no ECB, so one raw AES block operation is derived from AES-CBC with a zero IV:
//   encrypt: CBC(0, X) = E(X) || E(E(X) ^ pad)         -> the first block is E(X)
//   decrypt: CBC^-1(0, C || E(C ^ pad)) = D(C) || pad   -> a valid PKCS#7 block, so WebCrypto
//            strips it and returns exactly D(C), where pad is sixteen 0x10 bytes.

const BLOCK = 16;
const PAD = new Uint8Array(BLOCK).fill(BLOCK);
const ZERO_IV = new Uint8Array(BLOCK);

export function fromBase64(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export class ClusterKey {
  static async fromSecret(secret) {
    let raw;
    try {
      raw = fromBase64(secret.trim());
    } catch {
      throw new Error("the secret is not base64");
    }
    if (raw.length !== 32) throw new Error(`the secret must decode to 32 bytes, not ${raw.length}`);
    const gcm = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["decrypt"]);
    const cbc = await crypto.subtle.importKey("raw", raw, "AES-CBC", false, ["encrypt", "decrypt"]);
    raw.fill(0);
    return new ClusterKey(gcm, cbc);
  }

  constructor(gcm, cbc) {
    this.gcm = gcm;
    this.cbc = cbc;
  }

  async openData(blob) {
    if (blob.length < 12 + 16) throw new Error("sealed data is too short");
    const iv = blob.subarray(0, 12);
    try {
      return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv }, this.gcm, blob.subarray(12)));
    } catch {
      throw new Error("does not open with this secret");
    }
  }

  async encryptBlock(block) {
    const out = await crypto.subtle.encrypt({ name: "AES-CBC", iv: ZERO_IV }, this.cbc, block);
    return new Uint8Array(out, 0, BLOCK);
  }

  async decryptBlock(block) {
    const masked = new Uint8Array(BLOCK);
    for (let i = 0; i < BLOCK; i++) masked[i] = block[i] ^ PAD[i];
    const tail = await this.encryptBlock(masked);
    const both = new Uint8Array(2 * BLOCK);
    both.set(block, 0);
    both.set(tail, BLOCK);
    const out = await crypto.subtle.decrypt({ name: "AES-CBC", iv: ZERO_IV }, this.cbc, both);
    return new Uint8Array(out);
  }

  async openEndpoint(blob) {
    if (blob.length === 0 || blob.length % BLOCK) throw new Error("not a sealed endpoint");
    const framed = new Uint8Array(blob.length);
    for (let at = 0; at < blob.length; at += BLOCK) {
      framed.set(await this.decryptBlock(blob.subarray(at, at + BLOCK)), at);
    }
    const size = framed[0];
    // ECB has no integrity: zero padding is what tells a wrong key apart (as the service does).
    if (1 + size > framed.length || framed.subarray(1 + size).some((b) => b !== 0)) {
      throw new Error("does not open with this secret");
    }
    return framed.slice(1, 1 + size);
  }
}
