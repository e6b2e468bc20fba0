// Verifies one webhook delivery with livekit-server-sdk's WebhookReceiver.
//
//   node verify_webhook.mjs <api-key> <api-secret> <authorization header>  < body
//
// Prints the decoded WebhookEvent as JSON (toJson()) and exits 0, or prints
// {"error": message} and exits 1 when the signature or body hash is wrong.
import { WebhookReceiver } from "livekit-server-sdk";

const [apiKey, apiSecret, auth] = process.argv.slice(2);
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const body = Buffer.concat(chunks).toString("utf8");
try {
  const event = await new WebhookReceiver(apiKey, apiSecret).receive(body, auth);
  process.stdout.write(JSON.stringify(event.toJson()) + "\n");
} catch (e) {
  process.stdout.write(JSON.stringify({ error: String(e?.message ?? e) }) + "\n");
  process.exit(1);
}
