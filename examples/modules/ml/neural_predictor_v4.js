// Version 4: a broken build. It loads and answers its health check, but its model was never
// trained, so every prediction throws. The deployment demo's failing canary: an automatic
// rollout aborts on it and the stable version serves every call again. Do not swap it in.
export default {
  type: 'ML',
  async create(ctx) {
    return {
      async predict() {
        throw new Error(`neural_predictor ${ctx.version}: model weights missing (untrained build)`);
      },
      async stats() {
        return { served: 0, version: ctx.version };
      },
      healthCheck: () => ({ ok: true }),
    };
  },
};
