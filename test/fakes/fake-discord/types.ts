/**
 * The small slice of Discord's API shapes that the fake speaks. Written out here rather than
 * imported from discord-api-types so that the fake does not share code with the library under test.
 */

/** Interaction types. */
export const InteractionKind = { Ping: 1, ApplicationCommand: 2, MessageComponent: 3 } as const;

/** Interaction callback types. */
export const CallbackKind = {
  Pong: 1,
  ChannelMessageWithSource: 4,
  DeferredChannelMessageWithSource: 5,
  DeferredUpdateMessage: 6,
  UpdateMessage: 7,
} as const;

/** Message flag: only the user who triggered the interaction sees it. */
export const EphemeralFlag = 1 << 6;

export interface FakeUser {
  id: string;
  username: string;
  global_name?: string | null;
  discriminator?: string;
  bot?: boolean;
}

export interface FakeButton {
  type: 2;
  style: number;
  label?: string;
  custom_id?: string;
  url?: string;
  emoji?: { name?: string; id?: string };
  disabled?: boolean;
}

export interface FakeActionRow {
  type: 1;
  components: FakeButton[];
}

/** A file a message carries, with the bytes that were uploaded. */
export interface FakeAttachment {
  id: string;
  filename: string;
  contentType: string;
  size: number;
  data: Buffer;
  url: string;
}

/** A message as the fake keeps it. */
export interface FakeMessage {
  id: string;
  channelId: string;
  content: string;
  components: FakeActionRow[];
  embeds: unknown[];
  flags: number;
  attachments: FakeAttachment[];
  /** `bot` when sent with the bot token, otherwise the interaction that made it. */
  source: { kind: 'bot' } | { kind: 'interaction'; token: string; interactionId: string };
  /** True while a deferred response shows "thinking…". */
  loading: boolean;
  /** How many times it was edited. */
  edits: number;
  /** Every state the message had, oldest first (content and attachment names only). */
  history: Array<{ content: string; attachments: string[]; components: number; loading: boolean }>;
  deleted: boolean;
  createdAt: number;
}

/** One REST call the fake received. */
export interface RecordedCall {
  method: string;
  /** The path after /api/v10, e.g. `/webhooks/1/abc/messages/@original`. */
  path: string;
  /** The path with ids and tokens replaced by placeholders, e.g. `/webhooks/:app/:token/messages/@original`. */
  route: string;
  query: Record<string, string>;
  /** `Bot` or `Bearer` when an Authorization header came, else undefined. */
  auth: string | undefined;
  /** The JSON body (or multipart payload_json). */
  json: unknown;
  files: Array<{ field: string; filename: string; contentType: string; data: Buffer }>;
  status: number;
  at: number;
}

/** An interaction the fake made, and what happened to it. */
export interface FakeInteractionState {
  id: string;
  token: string;
  type: number;
  channelId: string;
  /** The callback type it was answered with, once answered. */
  callbackType: number | undefined;
  /** The message that answers it (its original response), when there is one. */
  originalMessageId: string | undefined;
  /** For component interactions: the message whose button was pressed. */
  sourceMessageId: string | undefined;
  expired: boolean;
  /** Largest upload allowed for this interaction, sent as attachment_size_limit. */
  attachmentSizeLimit: number | undefined;
}
