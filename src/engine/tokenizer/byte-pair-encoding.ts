/**
 * Byte-level byte-pair encoding as in OpenAI's CLIP (simple_tokenizer.py): bytes map to printable
 * characters, words end in `</w>`, and merges apply lowest rank first.
 */

/** The end-of-word marker appended to a word's last symbol. */
export const endOfWord = '</w>';

/**
 * CLIP's `bytes_to_unicode()`: each byte gets a printable character (printable Latin-1 bytes map
 * to themselves, the rest to U+0100 onwards). Entries are in the reference's dictionary order,
 * which fixes the first 256 vocabulary ids.
 */
export function bytesToUnicode(): Array<[byte: number, character: string]> {
  const bytes: number[] = [];
  for (let byte = 0x21; byte <= 0x7e; byte += 1) bytes.push(byte);
  for (let byte = 0xa1; byte <= 0xac; byte += 1) bytes.push(byte);
  for (let byte = 0xae; byte <= 0xff; byte += 1) bytes.push(byte);
  const characters = bytes.slice();
  let extra = 0;
  for (let byte = 0; byte < 256; byte += 1) {
    if (!bytes.includes(byte)) {
      bytes.push(byte);
      characters.push(256 + extra);
      extra += 1;
    }
  }
  return bytes.map((byte, index) => [byte, String.fromCharCode(characters[index]!)]);
}

interface PairEntry {
  rank: number;
  /** The node holding the pair's left symbol; node indices follow the word's order. */
  left: number;
  leftSymbol: string;
  rightSymbol: string;
}

/** A binary min-heap of pair entries ordered by rank. */
class PairHeap {
  private readonly entries: PairEntry[] = [];

  get size(): number {
    return this.entries.length;
  }

  peekRank(): number {
    return this.entries[0]!.rank;
  }

  push(entry: PairEntry): void {
    const entries = this.entries;
    entries.push(entry);
    let index = entries.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (entries[parent]!.rank <= entry.rank) break;
      entries[index] = entries[parent]!;
      index = parent;
    }
    entries[index] = entry;
  }

  pop(): PairEntry {
    const entries = this.entries;
    const top = entries[0]!;
    const last = entries.pop()!;
    if (entries.length > 0) {
      let index = 0;
      for (;;) {
        const leftChild = 2 * index + 1;
        if (leftChild >= entries.length) break;
        const rightChild = leftChild + 1;
        const smaller = rightChild < entries.length && entries[rightChild]!.rank < entries[leftChild]!.rank ? rightChild : leftChild;
        if (entries[smaller]!.rank >= last.rank) break;
        entries[index] = entries[smaller]!;
        index = smaller;
      }
      entries[index] = last;
    }
    return top;
  }
}

/** Applies a ranked merges list to words, with a bounded cache of results. */
export class BytePairEncoder {
  private readonly ranks: Map<string, number>;
  private readonly cache = new Map<string, string[]>();
  private readonly cacheLimit: number;

  /** @param merges pairs in priority order: the first merges first. */
  constructor(merges: ReadonlyArray<readonly [string, string]>, options: { cacheLimit?: number } = {}) {
    this.ranks = new Map();
    // A repeated pair keeps its last rank, as the reference's dict(zip(merges, range(...))) does.
    merges.forEach(([first, second], rank) => this.ranks.set(pairKey(first, second), rank));
    this.cacheLimit = options.cacheLimit ?? 20_000;
  }

  /**
   * Splits one word (already mapped through {@link bytesToUnicode}) into vocabulary symbols, the
   * last carrying `</w>`.
   */
  encodeWord(word: string): string[] {
    const cached = this.cache.get(word);
    if (cached !== undefined) return cached;
    const symbols = this.merge(word);
    // Long words are rare and would crowd out the common ones.
    if (word.length <= 64) {
      if (this.cache.size >= this.cacheLimit) this.cache.clear();
      this.cache.set(word, symbols);
    }
    return symbols;
  }

  /**
   * CLIP's algorithm, which repeatedly takes the lowest-ranked adjacent pair and merges all its
   * non-overlapping occurrences left to right, done with a heap and a linked list so that long
   * words cost O(n log n) rather than O(n²). A pass over rank r only merges pairs that existed
   * when it started, exactly like the reference; pairs it creates are never rank r again.
   */
  private merge(word: string): string[] {
    const symbols = word.split('');
    const count = symbols.length;
    if (count === 0) return [];
    symbols[count - 1] += endOfWord;
    if (count === 1) return symbols;
    const next = new Int32Array(count);
    const previous = new Int32Array(count);
    const alive = new Uint8Array(count).fill(1);
    for (let index = 0; index < count; index += 1) {
      next[index] = index + 1 < count ? index + 1 : -1;
      previous[index] = index - 1;
    }
    const heap = new PairHeap();
    const pushPair = (left: number): void => {
      if (left < 0) return;
      const right = next[left]!;
      if (right < 0) return;
      const leftSymbol = symbols[left]!;
      const rightSymbol = symbols[right]!;
      const rank = this.ranks.get(pairKey(leftSymbol, rightSymbol));
      if (rank !== undefined) heap.push({ rank, left, leftSymbol, rightSymbol });
    };
    for (let index = 0; index + 1 < count; index += 1) pushPair(index);

    while (heap.size > 0) {
      const rank = heap.peekRank();
      const batch: PairEntry[] = [];
      while (heap.size > 0 && heap.peekRank() === rank) batch.push(heap.pop());
      batch.sort((a, b) => a.left - b.left);
      for (const entry of batch) {
        const left = entry.left;
        const right = next[left]!;
        // Stale when either side has merged since the entry was made.
        if (!alive[left] || right < 0 || symbols[left] !== entry.leftSymbol || symbols[right] !== entry.rightSymbol) continue;
        symbols[left] = entry.leftSymbol + entry.rightSymbol;
        alive[right] = 0;
        const after = next[right]!;
        next[left] = after;
        if (after >= 0) previous[after] = left;
        if (previous[left]! >= 0) pushPair(previous[left]!);
        pushPair(left);
      }
    }
    const result: string[] = [];
    for (let index = 0; index >= 0; index = next[index]!) result.push(symbols[index]!);
    return result;
  }
}

function pairKey(first: string, second: string): string {
  // Byte-level symbols never contain a space (the space byte maps to U+0120).
  return `${first} ${second}`;
}
