// Type declarations for the wxauth mini program client (index.js).

/** The user as wxauth shows it to the mini program. */
export interface User {
  /** Random and stable; not derived from the openid. */
  id: string;
  appid: string;
  nickname: string | null;
  /** An `https://` URL, or a path such as `/v1/avatars/a_...` on the wxauth server (see `resolveUrl`). */
  avatar_url: string | null;
  /** 0 unknown, 1 male, 2 female. */
  gender: 0 | 1 | 2;
  country: string | null;
  province: string | null;
  city: string | null;
  language: string | null;
  phone: string | null;
  /** RFC 3339, UTC. */
  created_at: string;
  updated_at: string;
}

/** What `updateProfile` may change; `null` clears a field. Limits are the server's (`PATCH /v1/me`, sent as POST). */
export interface ProfileFields {
  nickname?: string | null;
  avatar_url?: string | null;
  gender?: 0 | 1 | 2 | null;
  country?: string | null;
  province?: string | null;
  city?: string | null;
  language?: string | null;
}

/** The answer of `bindPhone` (`POST /v1/me/phone`). */
export interface PhoneNumber {
  /** With the country prefix for numbers outside mainland China, as WeChat gives it. */
  phone_number: string;
  pure_phone_number: string;
  country_code: string;
}

export interface LoginResult {
  user: User;
  /** True when this login created the user. */
  newUser: boolean;
}

/** The error codes wxauth answers with (see its docs/api.md), and the client's own. */
export type ErrorCode =
  | 'invalid_request'
  | 'invalid_code'
  | 'unknown_app'
  | 'invalid_token'
  | 'token_expired'
  | 'session_revoked'
  | 'login_blocked'
  | 'user_banned'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'invalid_signature'
  | 'decrypt_failed'
  | 'session_key_expired'
  | 'content_rejected'
  | 'rate_limited'
  | 'upstream_error'
  | 'upstream_unavailable'
  | 'storage_unavailable'
  | 'internal'
  /** No HTTP answer: wx.request or wx.uploadFile called `fail` (offline, timeout, DNS, TLS). */
  | 'network_error'
  /** wx.login failed or gave no code. */
  | 'wx_login_failed'
  /** An HTTP error status whose body is not in wxauth's error shape (e.g. the team's own backend). */
  | 'http_error'
  /** A success status with a body the client cannot use. */
  | 'invalid_response';

/** What a call answered, as wx.request gives it. */
export interface WxResponse<T = any> {
  statusCode: number;
  data: T;
  /** Header names in whatever case the server sent them. */
  header: Record<string, string>;
  cookies?: string[];
}

/** Every failure of the client's promises (except a TypeError for a programming mistake). */
export declare class WxauthError extends Error {
  constructor(
    code: string,
    message?: string,
    details?: { status?: number; retryAfter?: number; response?: WxResponse<unknown> }
  );
  readonly name: 'WxauthError';
  /** The server's `error.code`, or one of the client's own codes. */
  readonly code: ErrorCode | (string & {});
  /** The HTTP status; 0 when no HTTP answer came. */
  readonly status: number;
  /** Seconds from the answer's `Retry-After`, when it had one. */
  readonly retryAfter?: number;
  /** The HTTP answer, body parsed, when there was one. */
  readonly response?: WxResponse<unknown>;
}

/** The options of wx.request, without the callbacks: the client returns a promise instead. */
export interface RequestOptions {
  /** Absolute, or a path resolved against `baseUrl`. */
  url: string;
  data?: string | Record<string, unknown> | ArrayBuffer;
  header?: Record<string, string>;
  method?: 'OPTIONS' | 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE' | 'TRACE' | 'CONNECT' | 'PATCH';
  timeout?: number;
  dataType?: string;
  responseType?: 'text' | 'arraybuffer';
  enableHttp2?: boolean;
  enableQuic?: boolean;
  enableCache?: boolean;
  [option: string]: unknown;
}

export type AuthChangeEvent =
  | { type: 'login'; user: User; newUser: boolean }
  | { type: 'logout'; all: boolean }
  /** A stored session turned out to be dead (refused by the server, or past its expiry). */
  | { type: 'expired'; code: 'invalid_token' | 'token_expired' | 'session_revoked' };

/** The part of the mini program's `wx` the client uses. */
export interface WxLike {
  login(options: any): any;
  request(options: any): any;
  uploadFile(options: any): any;
  getStorageSync(key: string): any;
  setStorageSync(key: string, data: any): void;
  removeStorageSync(key: string): void;
}

export interface ClientOptions {
  /** The wxauth server, e.g. "https://auth.example.com" (no path after it). */
  baseUrl: string;
  /** The team's API, for `apiRequest` paths, e.g. "https://api.example.com". Default `baseUrl`. */
  apiBaseUrl?: string;
  /** Sent with every login; needed when the server has several apps. */
  appid?: string;
  /** Where the session is kept with wx.setStorageSync. Default "wxauth". */
  storageKey?: string;
  /** Default: the global `wx`. */
  wx?: WxLike;
  /** The clock, in milliseconds since the epoch. Default `Date.now`. */
  now?: () => number;
  /** How to wait for Retry-After. Default: setTimeout. */
  sleep?: (ms: number) => Promise<void>;
  /** The longest Retry-After (in ms) the client waits before its one retry; longer ones are returned as errors. Default 30000. */
  maxRetryDelay?: number;
  /** Where login codes come from. Default: wx.login. In dev mode, e.g. `() => 'dev:alice#' + Date.now()`. */
  getCode?: () => string | Promise<string>;
  /** wx.request/wx.uploadFile timeout (ms) for calls that do not set their own. */
  timeout?: number;
}

export interface Client {
  /** A new login (one wx.login, one POST /v1/login), shared with any already in flight. */
  login(): Promise<LoginResult>;
  /** wx.request with the session token; logs in or refreshes first when needed. Rejects with WxauthError for HTTP status 400 and up. */
  request<T = any>(options: RequestOptions): Promise<WxResponse<T>>;
  /**
   * An access JWT (ES256) for the team's own API, from POST /v1/token with the session.
   * Kept in memory and shared: fetched again when less than a third of its lifetime is
   * left, one fetch for every caller waiting. Rejects with `not_found` when the server
   * has no `public_url`, `user_banned` for a banned user.
   */
  getAccessToken(): Promise<string>;
  /**
   * wx.request to the team's API with `Authorization: Bearer <access JWT>`, never the
   * session token. Paths are taken against `apiBaseUrl`. A 401 gets one new JWT and one
   * retry; a second 401 rejects. Rejects with WxauthError for HTTP status 400 and up.
   */
  apiRequest<T = any>(options: RequestOptions): Promise<WxResponse<T>>;
  /** Forgets the session and its access JWT here and revokes the session on the server (all of the user's sessions with `all`). */
  logout(options?: { all?: boolean }): Promise<void>;
  /** GET /v1/me. */
  getUser(): Promise<User>;
  /** POST /v1/me (the same as PATCH, which wx.request cannot send). */
  updateProfile(fields: ProfileFields): Promise<User>;
  /** Uploads the picture from `<button open-type="chooseAvatar">` (e.detail.avatarUrl) with wx.uploadFile. */
  uploadAvatar(tempFilePath: string): Promise<User>;
  /** POST /v1/me/phone with e.detail.code from `<button open-type="getPhoneNumber">`. */
  bindPhone(code: string): Promise<PhoneNumber>;
  /** Calls `listener` on login, logout and when a stored session is found dead; returns the unsubscribe function. */
  onAuthChange(listener: (event: AuthChangeEvent) => void): () => void;
  /** `url` as an absolute URL: paths (such as a User's avatar_url) are taken against baseUrl. */
  resolveUrl(url: string): string;
}

export declare function createClient(options: ClientOptions): Client;
