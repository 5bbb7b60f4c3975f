// Turns raw market data into model features. Depended on by neural_predictor.
export default {
  type: 'DATA_PIPELINE',
  async create() {
    const extract = (item) => {
      const prices = Array.isArray(item?.prices) ? item.prices.map(Number).filter(Number.isFinite) : [];
      const n = prices.length || 1;
      const mean = prices.reduce((a, b) => a + b, 0) / n;
      const last = prices.at(-1) ?? 0;
      const first = prices[0] ?? 0;
      return { mean, momentum: first === 0 ? 0 : (last - first) / first, count: prices.length };
    };
    return {
      /** { prices: number[] } -> { mean, momentum, count } */
      async extract(input) {
        return extract(input);
      },
      /** A batch in, one result per item out (the DATA_PIPELINE contract). */
      async process(batch) {
        if (!Array.isArray(batch)) throw new TypeError('process expects an array');
        return batch.map(extract);
      },
    };
  },
  tests: [
    { name: 'momentum of a rising series is positive', required: true, timeoutMs: 1000, async run(m) { return (await m.extract({ prices: [1, 2, 3] })).momentum > 0; } },
  ],
};
