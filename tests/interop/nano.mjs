// Nano helpers for the interop client: node RPC and building a signed, worked state send.
// Everything cryptographic comes from `nanocurrency` (marvinroger/nanocurrency-js); nothing here
// is shared with the Rust crate.
import {
  checkAddress, computeWork, createBlock, deriveAddress, derivePublicKey, validateWork, verifyBlock,
} from 'nanocurrency';

// Dev-network epoch-2 send threshold (nano-reference.md §5.2); the mock node demands it.
export const DEV_SEND_THRESHOLD = 'ffc0000000000000';

export function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

// One node RPC call. A node answers HTTP 200 even on errors, so `error` is tested first.
export async function rpc(url, body) {
  const res = await fetch(url, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`RPC ${body.action}: HTTP ${res.status}`);
  const json = await res.json();
  if (json.error) throw new Error(`RPC ${body.action}: ${json.error}`);
  return json;
}

// The signer's `nano_` address (the library's own default is the legacy `xrb_` prefix).
export function addressOf(secretKey, { xrb = false } = {}) {
  return deriveAddress(derivePublicKey(secretKey), { useNanoPrefix: !xrb });
}

// Builds (does NOT publish) a state send of `amount` raw from the key's account to `payTo`,
// on the account's current frontier. Returns { hash, block } with `block` in the JSON form a
// node's `process` and §9 hand-off take; hex for link/signature/work in lower case.
export async function buildSend({ rpcUrl, secretKey, payTo, amount, threshold = DEV_SEND_THRESHOLD, xrb = false }) {
  if (!/^[0-9]{1,39}$/.test(String(amount)) || BigInt(amount) <= 0n) throw new Error(`bad amount ${amount}`);
  if (!checkAddress(payTo)) throw new Error(`bad payTo address ${payTo}`);
  const account = addressOf(secretKey, { xrb });
  const info = await rpc(rpcUrl, { action: 'account_info', account, representative: 'true' });
  // Amounts are decimal strings of up to 128 bits: BigInt only, never Number.
  const balance = BigInt(info.balance) - BigInt(amount);
  if (balance < 0n) throw new Error(`balance ${info.balance} raw is below ${amount} raw`);

  // createBlock hashes and signs (ed25519-blake2b). With `link` given as an address it decodes
  // it to the destination public key. Work is filled in below (null is allowed here).
  const { hash, block } = createBlock(secretKey, {
    previous: info.frontier, representative: info.representative,
    balance: balance.toString(), link: payTo, work: null,
  });
  // Root of a send's work = previous. computeWork (WASM) takes a custom threshold.
  const work = await computeWork(info.frontier, { workThreshold: threshold });
  if (!work || !validateWork({ blockHash: info.frontier, work, threshold })) throw new Error('no valid work found');
  if (!verifyBlock({ hash, signature: block.signature, publicKey: derivePublicKey(secretKey) })) {
    throw new Error('library made a signature it does not verify');
  }
  return {
    hash, // upper-case hex, as the library writes it
    block: {
      type: 'state',
      account, // createBlock writes xrb_; we send the nano_ form the node writes (unless --xrb)
      previous: info.frontier,
      representative: info.representative,
      balance: balance.toString(),
      link: block.link.toLowerCase(),
      link_as_account: deriveAddress(block.link, { useNanoPrefix: !xrb }),
      signature: block.signature.toLowerCase(),
      work: work.toLowerCase(),
    },
  };
}
