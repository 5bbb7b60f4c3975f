// Version 3: the trend of the whole window (least-squares slope relative to the mean) instead of
// first-to-last momentum, so one noisy price moves it less. The deployment demo's healthy canary:
// an automatic rollout promotes it.
export default {
  type: 'ML',
  async create(ctx) {
    let served = ctx.previousState?.served ?? 0;
    const trendOf = (prices) => {
      const n = prices.length;
      if (n < 2) return 0;
      const meanX = (n - 1) / 2;
      const meanY = prices.reduce((a, b) => a + b, 0) / n;
      let num = 0;
      let den = 0;
      prices.forEach((y, x) => {
        num += (x - meanX) * (y - meanY);
        den += (x - meanX) ** 2;
      });
      return meanY === 0 ? 0 : num / den / Math.abs(meanY);
    };
    return {
      /** { prices: number[] } -> { prediction, confidence, served, model } */
      async predict(input) {
        const features = await ctx.dependencies.feature_extractor.extract(input);
        const prices = Array.isArray(input?.prices) ? input.prices.map(Number).filter(Number.isFinite) : [];
        served++;
        const score = prices.length >= 2 ? trendOf(prices) : features.momentum;
        const prediction = score > 0 ? 'up' : score < 0 ? 'down' : 'neutral';
        return { prediction, confidence: Math.min(1, 0.5 + Math.abs(score)), served, model: 'v3' };
      },
      async stats() {
        return { served, version: ctx.version };
      },
      exportState: () => ({ served }),
      importState(state) {
        served = Number(state?.served ?? 0);
      },
      healthCheck: () => ({ ok: true }),
    };
  },
  tests: [
    {
      name: 'a rising series is up',
      required: true,
      timeoutMs: 2000,
      async run(m) {
        return (await m.predict({ prices: [1, 2, 3, 5] })).prediction === 'up';
      },
    },
  ],
};
