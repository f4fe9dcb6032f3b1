// A seeded trade feed for demos: Zipf-skewed symbols (a few hot, a long tail), random-walk prices
// in cents, event times that run with the clock but arrive out of order (up to the disorder bound)
// and now and then much later, and rare price shocks the anomaly detector should catch.

import type { Random } from '../../src/index.ts';
import type { Trade } from './trade.ts';

export interface GeneratorOptions {
  readonly symbols: number;
  readonly random: Random;
  readonly disorderMs: number;
  /** Share of trades that arrive far behind (beyond the disorder bound): late. @default 0.001 */
  readonly lateFraction?: number;
  /** Share of trades that move the price by 5-10 %: the anomalies. @default 0.0002 */
  readonly shockFraction?: number;
}

export class TradeGenerator {
  readonly #options: Required<GeneratorOptions>;
  readonly #cumulative: number[] = [];
  readonly #prices: number[] = [];

  constructor(options: GeneratorOptions) {
    this.#options = { lateFraction: 0.001, shockFraction: 0.0002, ...options };
    let total = 0;
    for (let rank = 1; rank <= options.symbols; rank++) {
      total += 1 / rank ** 1.1;
      this.#cumulative.push(total);
      this.#prices.push(5000 + Math.floor(options.random.next() * 45_000));
    }
    for (let index = 0; index < this.#cumulative.length; index++) this.#cumulative[index]! /= total;
  }

  static symbolName(index: number): string {
    return `SYM${String(index + 1).padStart(4, '0')}`;
  }

  /** `count` trades with event times around `nowMs`. */
  next(count: number, nowMs: number): Trade[] {
    const { random, disorderMs, lateFraction, shockFraction } = this.#options;
    const trades: Trade[] = [];
    for (let n = 0; n < count; n++) {
      const draw = random.next();
      let index = 0;
      while (this.#cumulative[index]! < draw) index++;
      const shock =
        random.next() < shockFraction ? (random.next() < 0.5 ? -1 : 1) * (0.05 + random.next() * 0.05) : 0;
      const price = this.#prices[index]!;
      const step = Math.round(price * shock) + Math.floor(random.next() * 11) - 5;
      this.#prices[index] = Math.max(1, price + step);
      const late = random.next() < lateFraction;
      const delayMs = late
        ? disorderMs + 5000 + Math.floor(random.next() * 5000)
        : Math.floor(random.next() * disorderMs);
      trades.push({
        symbol: TradeGenerator.symbolName(index),
        priceCents: this.#prices[index]!,
        qty: 1 + Math.floor(random.next() * 1000),
        timestampMs: Math.max(0, nowMs - delayMs),
      });
    }
    return trades;
  }
}
