// Proves this client's block building without the paywall: the reference vector of
// nano-reference.md §9.1, then two sends built exactly as handoff.mjs builds them, which this
// script publishes itself (`process`) to a (mock) node; the node must answer the hash the
// library computed and then report the block as the account's frontier.
//
// usage: node self-check.mjs <rpc_url> (<private_key_hex> | --seed <seed_hex>) [dest_address] [amount_raw]
import assert from 'node:assert/strict';
import { decodePaymentSignatureHeader, encodePaymentSignatureHeader } from '@x402/core/http';
import { createBlock, deriveSecretKey } from 'nanocurrency';
import { addressOf, buildSend, fail, rpc } from './nano.mjs';

const args = process.argv.slice(2);
const seedAt = args.indexOf('--seed');
// The mock node prints a seed; the payer is its account index 0 (blake2b-32(seed ‖ 0u32 BE)).
const secretKey = seedAt >= 0 ? deriveSecretKey(args.splice(seedAt, 2)[1] ?? '', 0) : args.splice(1, 1)[0];
const [rpcUrl, dest = 'nano_18gmu6engqhgtjnppqam181o5nfhj4sdtgyhy36dan3jr9spt84rzwmktafc', amount = '1000'] = args;
if (!rpcUrl || !/^[0-9a-fA-F]{64}$/.test(secretKey ?? '')) {
  fail('usage: node self-check.mjs <rpc_url> (<private_key_hex> | --seed <seed_hex>) [dest_address] [amount_raw]');
}

try {
  // 0. The library against the reference vector (§9.1): hash and deterministic signature.
  const v = createBlock('0000000000000000000000000000000000000000000000000000000000000002', {
    previous: 'F47B23107E5F34B2CE06F562B5C435DF72A533251CB414C51B2B62A8F63A00E4',
    representative: 'nano_1hza3f7wiiqa7ig3jczyxj5yo86yegcmqk3criaz838j91sxcckpfhbhhra1',
    balance: '1000000000000000000000', link: 'nano_18gmu6engqhgtjnppqam181o5nfhj4sdtgyhy36dan3jr9spt84rzwmktafc', work: null,
  });
  assert.equal(v.hash, 'FF0144381CFF0B2C079A115E7ADA7E96F43FD219446E7524C48D1CC9900C4F17');
  assert.equal(v.block.signature.slice(0, 16), '3BFBA64A775550E6');

  const account = addressOf(secretKey);
  const results = [];
  // Two chained sends: the second is built on the frontier the first one created, and uses
  // the legacy xrb_ account form (the node must accept both prefixes).
  for (const xrb of [false, true]) {
    const before = await rpc(rpcUrl, { action: 'account_info', account });
    const { hash, block } = await buildSend({ rpcUrl, secretKey, payTo: dest, amount, xrb });
    // The hand-off header round-trips through the stock x402 codecs unchanged.
    const payload = { x402Version: 2, resource: { url: 'http://127.0.0.1/' }, accepted: {}, payload: { block } };
    assert.deepEqual(decodePaymentSignatureHeader(encodePaymentSignatureHeader(payload)), payload);

    const reply = await rpc(rpcUrl, { action: 'process', json_block: 'true', subtype: 'send', block });
    assert.equal(reply.hash?.toUpperCase(), hash, `node hash ${reply.hash} != library hash ${hash}`);
    const after = await rpc(rpcUrl, { action: 'account_info', account });
    assert.equal(after.frontier.toUpperCase(), hash);
    assert.equal(BigInt(before.balance) - BigInt(after.balance), BigInt(amount));
    const info = await rpc(rpcUrl, { action: 'block_info', json_block: 'true', hash });
    assert.equal(info.subtype, 'send');
    assert.equal(info.amount, amount);
    assert.equal(info.contents.link.toUpperCase(), block.link.toUpperCase());
    results.push({ hash, nodeHash: reply.hash, previous: block.previous, work: block.work, account: block.account, balance: after.balance });
  }
  console.log(JSON.stringify({ ok: true, account, privateKey: secretKey.toUpperCase(), dest, amount, sends: results }));
} catch (e) {
  fail(e?.message ?? String(e));
}
