/**
 * Converts the platform-neutral definitions of commands/ into Discord's JSON: message components
 * for a job's buttons and application-command registrations for `npm run register`.
 */
import {
  ApplicationCommandOptionType,
  ApplicationCommandType,
  ButtonStyle,
  ComponentType,
  InteractionContextType,
  PermissionFlagsBits,
  type APIActionRowComponent,
  type APIApplicationCommandBasicOption,
  type APIButtonComponentWithCustomId,
  type RESTPutAPIApplicationCommandsJSONBody,
} from 'discord.js';
import { commandDefinitions, type ButtonSpec, type CommandDefinition, type OptionDefinition } from '../../commands/definitions.js';

/** Discord's limits on message components. */
export const componentLimits = { rows: 5, buttonsPerRow: 5, customIdLength: 100 } as const;

/** The permission an admin-only command asks for by default; members who hold it count as admins. */
export const adminPermission = PermissionFlagsBits.ManageGuild;

/** Action rows for button specs; rows beyond Discord's limits are split or dropped rather than rejected. */
export function actionRows(rows: ButtonSpec[][]): Array<APIActionRowComponent<APIButtonComponentWithCustomId>> {
  const result: Array<APIActionRowComponent<APIButtonComponentWithCustomId>> = [];
  for (const row of rows) {
    for (let start = 0; start < row.length; start += componentLimits.buttonsPerRow) {
      const buttons = row
        .slice(start, start + componentLimits.buttonsPerRow)
        .filter((spec) => spec.customId.length <= componentLimits.customIdLength)
        .map(
          (spec): APIButtonComponentWithCustomId => ({
            type: ComponentType.Button,
            style: spec.style === 'primary' ? ButtonStyle.Primary : ButtonStyle.Secondary,
            label: spec.label,
            custom_id: spec.customId,
          }),
        );
      if (buttons.length > 0) result.push({ type: ComponentType.ActionRow, components: buttons });
    }
  }
  return result.slice(0, componentLimits.rows);
}

const optionTypes: Record<OptionDefinition['type'], ApplicationCommandOptionType.String | ApplicationCommandOptionType.Integer | ApplicationCommandOptionType.Number | ApplicationCommandOptionType.Boolean> = {
  string: ApplicationCommandOptionType.String,
  integer: ApplicationCommandOptionType.Integer,
  number: ApplicationCommandOptionType.Number,
  boolean: ApplicationCommandOptionType.Boolean,
};

function optionJson(option: OptionDefinition): APIApplicationCommandBasicOption {
  const json: Record<string, unknown> = {
    type: optionTypes[option.type],
    name: option.name,
    description: option.description.slice(0, 100),
    required: option.required,
  };
  if (option.choices?.length) json.choices = option.choices.slice(0, 25).map((choice) => ({ name: choice.name, value: choice.value }));
  if (option.type === 'integer' || option.type === 'number') {
    if (option.min !== undefined) json.min_value = option.min;
    if (option.max !== undefined) json.max_value = option.max;
  }
  if (option.type === 'string') {
    if (option.minLength !== undefined) json.min_length = option.minLength;
    if (option.maxLength !== undefined) json.max_length = Math.min(option.maxLength, 6000);
  }
  return json as unknown as APIApplicationCommandBasicOption;
}

/** One command's registration JSON. */
export function commandJson(command: CommandDefinition): RESTPutAPIApplicationCommandsJSONBody[number] {
  // Discord requires required options before optional ones.
  const options = [...command.options].sort((a, b) => Number(b.required) - Number(a.required)).map(optionJson);
  return {
    type: ApplicationCommandType.ChatInput,
    name: command.name,
    description: command.description.slice(0, 100),
    options,
    default_member_permissions: command.adminOnly ? String(adminPermission) : null,
    contexts: command.dmPermission ? [InteractionContextType.Guild, InteractionContextType.BotDM] : [InteractionContextType.Guild],
  };
}

/** The registration body for every command (PUT /applications/{id}/commands). */
export function registrationBody(definitions: readonly CommandDefinition[] = commandDefinitions): RESTPutAPIApplicationCommandsJSONBody {
  return definitions.map(commandJson);
}
