/**
 * Registers the slash commands from commands/definitions.ts with Discord:
 * `npm run register -- [--guild ID]` (globally, or in one guild where changes show at once).
 * Uses DISCORD_TOKEN, DISCORD_APPLICATION_ID and DISCORD_API_URL like the bot.
 */
import { pathToFileURL } from 'node:url';
import { REST, Routes } from 'discord.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import { ConfigError, redactSecrets } from '../../src/errors.js';
import { registrationBody } from './components.js';

export interface RegisterOptions {
  config: Pick<Config, 'discordToken' | 'discordApplicationId' | 'discordApiUrl'>;
  /** Register in this guild only; globally when absent. */
  guildId?: string;
}

/** PUTs every command definition; returns the names Discord registered. */
export async function registerCommands(options: RegisterOptions): Promise<string[]> {
  const { config } = options;
  if (!config.discordToken) throw new ConfigError('DISCORD_TOKEN', 'a Discord bot token', 'is required to register commands', 'discordToken');
  if (!config.discordApplicationId) throw new ConfigError('DISCORD_APPLICATION_ID', 'a Discord application id', 'is required to register commands', 'discordApplicationId');
  const rest = new REST(config.discordApiUrl ? { api: config.discordApiUrl } : {}).setToken(config.discordToken);
  const route = options.guildId ? Routes.applicationGuildCommands(config.discordApplicationId, options.guildId) : Routes.applicationCommands(config.discordApplicationId);
  const saved = (await rest.put(route, { body: registrationBody() })) as Array<{ name: string }>;
  return saved.map((command) => command.name);
}

/** Reads `--guild ID` (or `--guild=ID`) from the arguments. */
export function parseRegisterArguments(argv: readonly string[]): { guildId?: string } {
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index] ?? '';
    if (argument === '--guild') {
      const value = argv[index + 1];
      if (!value || !/^\d{5,25}$/.test(value)) throw new Error('--guild needs a guild id (digits).');
      return { guildId: value };
    }
    if (argument.startsWith('--guild=')) {
      const value = argument.slice('--guild='.length);
      if (!/^\d{5,25}$/.test(value)) throw new Error('--guild needs a guild id (digits).');
      return { guildId: value };
    }
    if (argument === '--help' || argument === '-h') continue;
    throw new Error(`Unknown argument ${argument}. Usage: npm run register -- [--guild ID]`);
  }
  return {};
}

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    console.log('Usage: npm run register -- [--guild ID]\nRegisters the slash commands globally, or in one guild (shows at once).');
    return;
  }
  const { guildId } = parseRegisterArguments(process.argv.slice(2));
  const names = await registerCommands({ config: loadConfig(), ...(guildId ? { guildId } : {}) });
  console.log(`Registered ${names.length} commands ${guildId ? `in guild ${guildId}` : 'globally (may take up to an hour to show)'}: ${names.map((name) => `/${name}`).join(' ')}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(redactSecrets(error instanceof Error ? error.message : String(error)));
    process.exitCode = 1;
  });
}
