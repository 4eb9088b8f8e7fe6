/**
 * Turns what was typed in the playground's prompt box into a command name and options, the way a
 * chat platform would: `/imagine a red circle --ar 3:2` (or just the prompt), `/info`, `/help`,
 * and other commands with Discord-style `option:value` words (`/settings variation:subtle`).
 */
import { findCommand, optionNames } from '../../commands/definitions.js';
import { ErrorCode, UserError } from '../../src/errors.js';

/** A command as the dispatcher takes it. */
export interface TypedCommand {
  name: string;
  options: Record<string, string | number | boolean | undefined>;
}

/**
 * Parses the prompt box. Text without a leading slash is an imagine prompt. Throws
 * {@link UserError} for an empty box, an unknown command or an option the command does not have.
 */
export function parseTypedCommand(input: string): TypedCommand {
  const text = input.trim();
  if (!text) throw new UserError(ErrorCode.PromptEmpty, 'Type a prompt, for example `a red circle --ar 3:2`, or /help.', { field: 'prompt' });
  if (!text.startsWith('/')) return { name: 'imagine', options: { [optionNames.prompt]: text } };
  const match = /^\/(\S+)\s*([\s\S]*)$/.exec(text)!;
  const name = match[1]!.toLowerCase();
  const rest = match[2]!.trim();
  const definition = findCommand(name);
  if (!definition) throw new UserError(ErrorCode.InvalidAction, `There is no /${name} command. Type /help to see the commands.`);
  if (definition.name === 'imagine') {
    // "prompt:" is what Discord shows before the option; people copy it along.
    const prompt = rest.replace(/^prompt:\s*/i, '');
    return { name, options: { [optionNames.prompt]: prompt } };
  }
  const options: TypedCommand['options'] = {};
  if (!rest) return { name, options };
  const words = rest.split(/\s+/);
  const named = words.every((word) => /^[a-z_]+:/i.test(word));
  const required = definition.options.filter((option) => option.required);
  if (!named) {
    // A bare value is fine for a command with one required option (`/cancel abc123`).
    if (required.length !== 1) throw new UserError(ErrorCode.FlagInvalid, `Give /${name} its options as name:value, e.g. ${example(definition.options.map((option) => option.name))}.`);
    options[required[0]!.name] = convert(required[0]!.type, rest, name, required[0]!.name);
    return { name, options };
  }
  for (const word of words) {
    const colon = word.indexOf(':');
    const key = word.slice(0, colon).toLowerCase();
    const value = word.slice(colon + 1);
    const option = definition.options.find((candidate) => candidate.name === key);
    if (!option) throw new UserError(ErrorCode.UnknownFlag, `/${name} has no option \`${key}\`. Its options: ${definition.options.map((candidate) => `\`${candidate.name}\``).join(', ') || 'none'}.`, { field: key });
    options[key] = convert(option.type, value, name, key);
  }
  return { name, options };
}

function convert(type: string, value: string, command: string, option: string): string | number | boolean {
  if (type === 'boolean') {
    if (/^(true|yes|1)$/i.test(value)) return true;
    if (/^(false|no|0)$/i.test(value)) return false;
    throw new UserError(ErrorCode.FlagInvalid, `/${command} ${option} must be true or false.`, { field: option });
  }
  if (type === 'integer' || type === 'number') {
    const number = Number(value);
    if (value === '' || !Number.isFinite(number) || (type === 'integer' && !Number.isInteger(number))) {
      throw new UserError(ErrorCode.FlagInvalid, `/${command} ${option} must be a${type === 'integer' ? 'n integer' : ' number'}.`, { field: option });
    }
    return number;
  }
  return value;
}

function example(names: string[]): string {
  return names.slice(0, 2).map((name) => `${name}:…`).join(' ') || '/help';
}
