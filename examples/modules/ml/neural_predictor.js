// Version 1 of the predictor: a simple momentum rule on the features of feature_extractor.
export default {
  type: 'ML',
  async create(ctx) {
    let served = ctx.previousState?.served ?? 0;
    return {
      /** { prices: number[] } -> { prediction, confidence, served } */
      async predict(input) {
        const features = await ctx.dependencies.feature_extractor.extract(input);
        served++;
        const prediction = features.momentum > 0 ? 'up' : features.momentum < 0 ? 'down' : 'neutral';
        return { prediction, confidence: Math.min(1, 0.5 + Math.abs(features.momentum)), served, model: 'v1' };
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
};
