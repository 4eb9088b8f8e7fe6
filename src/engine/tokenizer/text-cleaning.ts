/**
 * The text clean-up that CLIP applies before splitting a prompt into words: ftfy.fix_text (the
 * parts that matter for typed prompts), html.unescape twice, whitespace collapsing and lower-casing.
 */

import { legacyEntityNames, namedEntities } from './html-entities.js';

/**
 * Python's `str.isspace` / Unicode White_Space, which CLIP's `\s` means. JavaScript's `\s` differs:
 * it lacks U+0085 and adds U+FEFF.
 */
export const whitespaceClass = '\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

const whitespaceRun = new RegExp(`[${whitespaceClass}]+`, 'gu');
const leadingOrTrailingWhitespace = new RegExp(`^[${whitespaceClass}]+|[${whitespaceClass}]+$`, 'gu');

/** Python's html module maps these numeric references (mostly Windows-1252) rather than the code point. */
const numericReferenceOverrides: ReadonlyMap<number, number> = new Map([
  [0x00, 0xfffd], [0x0d, 0x0d], [0x80, 0x20ac], [0x81, 0x81], [0x82, 0x201a], [0x83, 0x0192],
  [0x84, 0x201e], [0x85, 0x2026], [0x86, 0x2020], [0x87, 0x2021], [0x88, 0x02c6], [0x89, 0x2030],
  [0x8a, 0x0160], [0x8b, 0x2039], [0x8c, 0x0152], [0x8d, 0x8d], [0x8e, 0x017d], [0x8f, 0x8f],
  [0x90, 0x90], [0x91, 0x2018], [0x92, 0x2019], [0x93, 0x201c], [0x94, 0x201d], [0x95, 0x2022],
  [0x96, 0x2013], [0x97, 0x2014], [0x98, 0x02dc], [0x99, 0x2122], [0x9a, 0x0161], [0x9b, 0x203a],
  [0x9c, 0x0153], [0x9d, 0x9d], [0x9e, 0x017e], [0x9f, 0x0178],
]);

/** Code points that Python's html.unescape drops when written as numeric references. */
function isDroppedCodePoint(codePoint: number): boolean {
  return (codePoint >= 0x01 && codePoint <= 0x08) || codePoint === 0x0b || (codePoint >= 0x0e && codePoint <= 0x1f)
    || (codePoint >= 0x7f && codePoint <= 0x9f) || (codePoint >= 0xfdd0 && codePoint <= 0xfdef)
    || (codePoint & 0xfffe) === 0xfffe;
}

const characterReference = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/g;

function decodeNumericReference(body: string): string {
  const hexadecimal = body[1] === 'x' || body[1] === 'X';
  const digits = body.slice(hexadecimal ? 2 : 1).replace(/;$/, '');
  // parseInt of a very long digit string is a huge float; anything past U+10FFFF is invalid anyway.
  const codePoint = Number.parseInt(digits, hexadecimal ? 16 : 10);
  const override = numericReferenceOverrides.get(codePoint);
  if (override !== undefined) return String.fromCodePoint(override);
  if ((codePoint >= 0xd800 && codePoint <= 0xdfff) || codePoint > 0x10ffff) return '\ufffd';
  if (isDroppedCodePoint(codePoint)) return '';
  return String.fromCodePoint(codePoint);
}

function decodeNamedReference(body: string): string {
  if (body.endsWith(';')) {
    const codePoint = namedEntities.get(body.slice(0, -1));
    if (codePoint !== undefined) return String.fromCodePoint(codePoint);
  } else if (legacyEntityNames.has(body)) {
    return String.fromCodePoint(namedEntities.get(body)!);
  }
  // Like browsers and Python: the longest legacy name that prefixes the text, the rest kept.
  for (let length = body.length - 1; length > 1; length -= 1) {
    const prefix = body.slice(0, length);
    if (legacyEntityNames.has(prefix)) return String.fromCodePoint(namedEntities.get(prefix)!) + body.slice(length);
  }
  return `&${body}`;
}

/** Python's `html.unescape`, restricted to the entity names in {@link namedEntities}. */
export function unescapeHtml(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(characterReference, (_match, body: string) =>
    body.startsWith('#') ? decodeNumericReference(body) : decodeNamedReference(body));
}

const latinLigatures: Readonly<Record<string, string>> = {
  'Ĳ': 'IJ', 'ĳ': 'ij', 'ŉ': 'ʼn', 'Ǳ': 'DZ', 'ǲ': 'Dz', 'ǳ': 'dz', 'Ǆ': 'DŽ', 'ǅ': 'Dž', 'ǆ': 'dž',
  'Ǉ': 'LJ', 'ǈ': 'Lj', 'ǉ': 'lj', 'Ǌ': 'NJ', 'ǋ': 'Nj', 'ǌ': 'nj', 'ﬀ': 'ff', 'ﬁ': 'fi', 'ﬂ': 'fl',
  'ﬃ': 'ffi', 'ﬄ': 'ffl', 'ﬅ': 'ſt', 'ﬆ': 'st',
};
const latinLigaturePattern = /[ĲĳŉǱǲǳǄǅǆǇǈǉǊǋǌﬀﬁﬂﬃﬄﬅﬆ]/g;
const fullOrHalfWidth = /[\u3000\uff01-\uffef]/g;
const terminalEscape = /\u001b\[[0-9;]*[a-zA-Z]/g;
const curlySingleQuote = /[\u02bc\u2018-\u201b]/g;
const curlyDoubleQuote = /[\u201c-\u201f]/g;
const lineBreak = /\r\n|[\r\u2028\u2029\u0085]/g;
// ftfy's remove_control_chars: C0 controls other than tab/newline/form feed, DEL, deprecated
// format characters, the byte-order mark and the interlinear annotation characters.
const controlCharacter = /[\u0000-\u0008\u000b\u000e-\u001f\u007f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;
// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const semicolonReference = /&#?[0-9A-Za-z]{1,24};/g;

/** ftfy's own unescape step: only complete `&...;` references, and only in text without `<`. */
function unescapeHtmlLikeFtfy(text: string): string {
  if (!text.includes('&') || text.includes('<')) return text;
  return text.replace(semicolonReference, (reference) => {
    const body = reference.slice(1);
    if (body.startsWith('#')) {
      if (!/^#([0-9]+|[xX][0-9a-fA-F]+);$/.test(body)) return reference;
      return decodeNumericReference(body);
    }
    const codePoint = namedEntities.get(body.slice(0, -1));
    return codePoint === undefined ? reference : String.fromCodePoint(codePoint);
  });
}

/**
 * The parts of ftfy.fix_text (ftfy 6 defaults, which CLIP calls) that apply to typed text: HTML
 * entities, terminal escapes, Latin ligatures, full/half-width forms, curly quotes, line breaks,
 * lone surrogates, control characters, NFC. Mojibake repair (fix_encoding and friends) is not
 * reproduced.
 */
export function fixText(text: string): string {
  return unescapeHtmlLikeFtfy(text)
    .replace(terminalEscape, '')
    .replace(latinLigaturePattern, (character) => latinLigatures[character] ?? character)
    .replace(fullOrHalfWidth, (character) => (character === '\u3000' ? ' ' : character.normalize('NFKC')))
    .replace(curlySingleQuote, "'")
    .replace(curlyDoubleQuote, '"')
    .replace(lineBreak, '\n')
    .replace(loneSurrogate, '\ufffd')
    .replace(controlCharacter, '')
    .normalize('NFC');
}

/**
 * CLIP's `whitespace_clean(basic_clean(text)).lower()`: the string whose words the tokenizer
 * splits and encodes.
 */
export function cleanText(text: string): string {
  const unescaped = unescapeHtml(unescapeHtml(fixText(text)));
  return unescaped.replace(whitespaceRun, ' ').replace(leadingOrTrailingWhitespace, '').toLowerCase();
}
