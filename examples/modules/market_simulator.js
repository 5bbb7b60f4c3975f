// A deterministic market: prices move by a seeded random walk, so tests and demos repeat.
// Plain object default export: a module needs no import from Helios.
export default {
  type: 'GENERIC',
  async create(ctx) {
    const prices = new Map(Object.entries(ctx.previousState?.prices ?? { BTCZAR: 1_200_000, ETHZAR: 65_000 }));
    let seed = ctx.previousState?.seed ?? 42;
    const next = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    return {
      /** { symbol } -> { symbol, price, at } */
      async quote(input) {
        const symbol = String(input?.symbol ?? 'BTCZAR');
        const last = prices.get(symbol) ?? 100;
        const price = Math.round(last * (1 + (next() - 0.5) / 100) * 100) / 100;
        prices.set(symbol, price);
        return { symbol, price };
      },
      async symbols() {
        return [...prices.keys()];
      },
      exportState: () => ({ prices: Object.fromEntries(prices), seed }),
      importState(state) {
        for (const [symbol, price] of Object.entries(state?.prices ?? {})) prices.set(symbol, price);
        seed = state?.seed ?? seed;
      },
    };
  },
};
