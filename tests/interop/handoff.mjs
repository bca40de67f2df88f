// Independent x402 `exact`-on-Nano hand-off client (protocol.md §9): pays a 402 by handing the
// server a signed, unpublished send block in PAYMENT-SIGNATURE.
//
// usage: node handoff.mjs <url> <rpc_url> <private_key_hex> [--no-session-echo] [--xrb]
//   --no-session-echo  drop accepted.extra.nanoSession (the server must find the session by amount)
//   --xrb              write account/link_as_account with the legacy xrb_ prefix
// Prints one JSON line: {status, body, paymentResponse, hash, firstStatus}.
import {
  decodePaymentRequiredHeader, decodePaymentResponseHeader, encodePaymentSignatureHeader,
} from '@x402/core/http'; // the stock x402 v2 HTTP header codecs
import { buildSend, fail } from './nano.mjs';

const args = process.argv.slice(2);
const flags = new Set(args.filter((a) => a.startsWith('--')));
const [url, rpcUrl, secretKey] = args.filter((a) => !a.startsWith('--'));
for (const f of flags) if (!['--no-session-echo', '--xrb'].includes(f)) fail(`unknown option ${f}`);
if (!url || !rpcUrl || !/^[0-9a-fA-F]{64}$/.test(secretKey ?? '')) {
  fail('usage: node handoff.mjs <url> <rpc_url> <private_key_hex> [--no-session-echo] [--xrb]');
}

try {
  // 1. The unpaid request must be answered 402 with a PAYMENT-REQUIRED header.
  const first = await fetch(url, { redirect: 'manual' });
  await first.arrayBuffer();
  if (first.status !== 402) throw new Error(`expected 402, got ${first.status}`);
  const header = first.headers.get('payment-required');
  if (!header) throw new Error('402 without a PAYMENT-REQUIRED header');
  const required = decodePaymentRequiredHeader(header);
  const offer = required.accepts?.[0];
  if (offer?.scheme !== 'exact' || !String(offer?.network).startsWith('nano:')) {
    throw new Error(`accepts[0] is not exact on nano:*: ${JSON.stringify(offer)}`);
  }

  // 2. Sign a send of exactly `amount` raw to `payTo` on our frontier; it is NOT published.
  const { hash, block } = await buildSend({
    rpcUrl, secretKey, payTo: offer.payTo, amount: offer.amount, xrb: flags.has('--xrb'),
  });

  // 3. Retry with the block handed off in PAYMENT-SIGNATURE.
  const accepted = structuredClone(offer); // echoed as received
  if (flags.has('--no-session-echo') && accepted.extra) delete accepted.extra.nanoSession;
  const paymentPayload = { x402Version: 2, resource: required.resource, accepted, payload: { block } };
  const retry = await fetch(url, {
    redirect: 'manual', headers: { 'PAYMENT-SIGNATURE': encodePaymentSignatureHeader(paymentPayload) },
  });
  const body = await retry.text();
  const responseHeader = retry.headers.get('payment-response');
  const paymentResponse = responseHeader ? decodePaymentResponseHeader(responseHeader) : null;

  console.log(JSON.stringify({ status: retry.status, body, paymentResponse, hash, firstStatus: first.status }));
} catch (e) {
  fail(e?.message ?? String(e));
}
