// Version 2: weighs momentum by the neural_network_v2 flag and guards the feature call with a
// breaker, the seed's "circuit breaker for ML predictions" idiom.
export default {
  type: 'ML',
  async create(ctx) {
    let served = ctx.previousState?.served ?? 0;
    const guard = ctx.breakers.getOrCreate('feature_extractor_calls', { failureThreshold: 5, resetTimeoutSeconds: 30 });
    return {
      // `call.context` is the caller's evaluation context from invokeModule(context: ...).
      async predict(input, call) {
        let features;
        try {
          features = await guard.call(() => ctx.dependencies.feature_extractor.extract(input));
        } catch (error) {
          if (error?.code === 'CIRCUIT_OPEN') return { prediction: 'neutral', confidence: 0.5, served, model: 'v2-fallback' };
          throw error;
        }
        served++;
        const boost = ctx.flags.isEnabled('neural_network_v2', call?.context ?? { sessionId: input?.sessionId }) ? 2 : 1;
        const score = features.momentum * boost;
        const prediction = score > 0 ? 'up' : score < 0 ? 'down' : 'neutral';
        return { prediction, confidence: Math.min(1, 0.5 + Math.abs(score)), served, model: 'v2' };
      },
      async stats() {
        return { served, version: ctx.version };
      },
      exportState: () => ({ served }),
      importState(state, fromVersion) {
        served = Number(state?.served ?? 0);
        ctx.logger.info('state imported', { fromVersion, served });
      },
      healthCheck: () => ({ ok: true }),
    };
  },
  tests: [
    {
      name: 'same input, same prediction',
      required: true,
      timeoutMs: 2000,
      async run(m) {
        const a = await m.predict({ prices: [1, 2, 3] });
        const b = await m.predict({ prices: [1, 2, 3] });
        return a.prediction === b.prediction && a.confidence === b.confidence;
      },
    },
  ],
};
