// Calls one RoomService method through livekit-server-sdk's RoomServiceClient
// (Twirp with JSON bodies) and prints the result as JSON on stdout.
//
//   node call.mjs <url> <api-key> <api-secret> <Method> '<json args>'
//
// If LIVEKIT_TOKEN is set in the environment it is sent as the bearer token
// instead of one minted from the key and secret (for refusal tests).
// Args use the SDK's camelCase names, e.g. CreateRoom '{"name":"r","emptyTimeout":1}';
// SendData takes "data" as base64. Protobuf results are printed with toJson();
// list results are wrapped ({"rooms": [...]}, {"participants": [...]}), void
// results print {}. On a server error prints {"error": {name, status, code,
// message}} and exits 1; on any other failure exits 2.
import { DataPacket_Kind, RoomServiceClient, TwirpError } from "livekit-server-sdk";

const [url, apiKey, apiSecret, method, rawArgs = "{}"] = process.argv.slice(2);
if (!method) {
  console.error("usage: node call.mjs <url> <api-key> <api-secret> <Method> '<json args>'");
  process.exit(2);
}
const a = JSON.parse(rawArgs);
const token = process.env.LIVEKIT_TOKEN || undefined;
// failover off (it only engages for LiveKit Cloud hosts anyway)
const client = new RoomServiceClient(url, apiKey, apiSecret, { token, failover: false, requestTimeout: 10 });

const json = (msg) => (msg && typeof msg.toJson === "function" ? msg.toJson() : msg ?? {});

const calls = {
  CreateRoom: async () => json(await client.createRoom(a)),
  ListRooms: async () => ({ rooms: (await client.listRooms(a.names)).map(json) }),
  DeleteRoom: async () => json(await client.deleteRoom(a.room)),
  UpdateRoomMetadata: async () => json(await client.updateRoomMetadata(a.room, a.metadata)),
  ListParticipants: async () => ({ participants: (await client.listParticipants(a.room)).map(json) }),
  GetParticipant: async () => json(await client.getParticipant(a.room, a.identity)),
  RemoveParticipant: async () => json(await client.removeParticipant(a.room, a.identity)),
  MutePublishedTrack: async () => ({
    track: json(await client.mutePublishedTrack(a.room, a.identity, a.trackSid, a.muted)),
  }),
  UpdateParticipant: async () =>
    json(
      await client.updateParticipant(a.room, a.identity, {
        metadata: a.metadata,
        name: a.name,
        attributes: a.attributes,
        permission: a.permission,
      }),
    ),
  UpdateSubscriptions: async () =>
    json(await client.updateSubscriptions(a.room, a.identity, a.trackSids, a.subscribe)),
  SendData: async () =>
    json(
      await client.sendData(
        a.room,
        new Uint8Array(Buffer.from(a.data ?? "", "base64")),
        a.reliable === false ? DataPacket_Kind.LOSSY : DataPacket_Kind.RELIABLE,
        { destinationIdentities: a.destinationIdentities, topic: a.topic },
      ),
    ),
};

const call = calls[method];
if (!call) {
  console.error(`unknown method ${method}`);
  process.exit(2);
}
try {
  process.stdout.write(JSON.stringify(await call()) + "\n");
} catch (e) {
  if (e instanceof TwirpError) {
    process.stdout.write(
      JSON.stringify({ error: { name: e.name, status: e.status, code: e.code ?? null, message: e.message } }) + "\n",
    );
    process.exit(1);
  }
  process.stdout.write(JSON.stringify({ error: { name: e?.name ?? "Error", message: String(e?.stack ?? e) } }) + "\n");
  process.exit(2);
}
