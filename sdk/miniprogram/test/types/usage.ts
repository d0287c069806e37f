// Compiled with `tsc --noEmit --strict` (see .ci/run): the declarations in index.d.ts
// must describe how the library is used, and refuse what it does not accept.

import { createClient, WxauthError } from '../..';
import type { AuthChangeEvent, Client, PhoneNumber, User, WxLike, WxResponse } from '../..';

// The mini program's globals this file uses.
declare const wx: WxLike;
declare const console: { log(...values: unknown[]): void };
declare function setTimeout(callback: () => void, ms: number): number;

const client: Client = createClient({
  baseUrl: 'https://auth.example.com',
  apiBaseUrl: 'https://api.example.com',
  appid: 'wx1234567890abcdef',
  storageKey: 'auth',
  wx,
  now: () => Date.now(),
  sleep: (ms) => new Promise<void>((resolve) => setTimeout(resolve, ms)),
  maxRetryDelay: 10000,
  getCode: () => 'dev:alice#' + Date.now(),
  timeout: 8000,
});

interface Order {
  id: number;
  item: string;
}

async function use(): Promise<void> {
  const { user, newUser } = await client.login();
  const id: string = user.id;
  const fresh: boolean = newUser;

  const res: WxResponse<Order[]> = await client.request<Order[]>({
    url: '/api/orders',
    method: 'POST',
    data: { item: 'tea' },
    header: { 'X-Trace': 'abc' },
  });
  const first: string | undefined = res.data[0] && res.data[0].item;

  const orders: WxResponse<Order[]> = await client.apiRequest<Order[]>({ url: '/orders', method: 'GET' });
  const count: number = orders.data.length;
  const jwt: string = await client.getAccessToken();

  const me: User = await client.getUser();
  const nickname: string | null = me.nickname;
  await client.updateProfile({ nickname: 'Alice 🐼', gender: 2, city: null });
  const withAvatar: User = await client.uploadAvatar('http://tmp/avatar.png');
  const src: string = client.resolveUrl(withAvatar.avatar_url || '/default.png');
  const phone: PhoneNumber = await client.bindPhone('code');
  const digits: string = phone.pure_phone_number;
  await client.logout();
  await client.logout({ all: true });

  try {
    await client.getUser();
  } catch (e) {
    if (e instanceof WxauthError) {
      const code: string = e.code;
      const status: number = e.status;
      const wait: number | undefined = e.retryAfter;
      if (e.code === 'user_banned' || e.code === 'network_error') {
        console.log(code, status, wait, e.message, e.response && e.response.statusCode);
      }
    }
  }
  console.log(id, fresh, first, count, jwt, nickname, src, digits);
}

const unsubscribe: () => void = client.onAuthChange((event: AuthChangeEvent) => {
  switch (event.type) {
    case 'login':
      console.log(event.user.id, event.newUser);
      break;
    case 'logout':
      console.log(event.all);
      break;
    case 'expired':
      console.log(event.code);
      break;
  }
});
unsubscribe();
use();

// What the declarations must refuse.
// @ts-expect-error baseUrl is required
createClient({ wx });
// @ts-expect-error gender is 0, 1 or 2
client.updateProfile({ gender: 3 });
// @ts-expect-error unknown profile field
client.updateProfile({ openid: 'o' });
// @ts-expect-error the avatar is a file path
client.uploadAvatar(42);
// @ts-expect-error apiRequest needs a url
client.apiRequest({ method: 'GET' });
// @ts-expect-error getAccessToken takes no options
client.getAccessToken({ force: true });
