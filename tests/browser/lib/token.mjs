// Access tokens for the dev key pair, minted by livekit-server-sdk.
import { AccessToken } from 'livekit-server-sdk';
import { API_KEY, API_SECRET } from './server.mjs';

export async function token(identity, room, grant = {}) {
  const at = new AccessToken(API_KEY, API_SECRET, { identity, name: identity, ttl: '10m' });
  at.addGrant({ roomJoin: true, room, canPublish: true, canSubscribe: true, canPublishData: true, ...grant });
  return at.toJwt();
}

export function roomName(prefix) {
  return `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
}
