// Paper trading v2: limit orders (rest until the quote crosses) and a position per symbol.
export default {
  type: 'TRADING',
  async create(ctx) {
    let orders = ctx.previousState?.orders ?? [];
    let nextId = ctx.previousState?.nextId ?? 1;
    const positions = new Map(Object.entries(ctx.previousState?.positions ?? {}));
    const validate = (order) => {
      if (!order || typeof order !== 'object') throw new TypeError('order must be an object');
      if (!['buy', 'sell'].includes(order.side)) throw new TypeError('order.side must be "buy" or "sell"');
      if (!(Number(order.quantity) > 0)) throw new TypeError('order.quantity must be positive');
      if (typeof order.symbol !== 'string' || order.symbol === '') throw new TypeError('order.symbol is required');
      if (order.limit !== undefined && !(Number(order.limit) > 0)) throw new TypeError('order.limit must be positive');
    };
    return {
      async placeOrder(order) {
        validate(order);
        const { price } = await ctx.dependencies.market_simulator.quote({ symbol: order.symbol });
        const crosses = order.limit === undefined || (order.side === 'buy' ? price <= order.limit : price >= order.limit);
        const placed = {
          id: nextId++, symbol: order.symbol, side: order.side, quantity: Number(order.quantity),
          price: crosses ? price : Number(order.limit), status: crosses ? 'filled' : 'open',
        };
        if (crosses) {
          const signed = order.side === 'buy' ? placed.quantity : -placed.quantity;
          positions.set(order.symbol, (positions.get(order.symbol) ?? 0) + signed);
        }
        orders.push(placed);
        return placed;
      },
      async orders() {
        return orders;
      },
      async positions() {
        return Object.fromEntries(positions);
      },
      exportState: () => ({ orders, nextId, positions: Object.fromEntries(positions) }),
      importState(state, fromVersion) {
        orders = Array.isArray(state?.orders) ? state.orders : [];
        nextId = Number(state?.nextId ?? orders.length + 1);
        // v1 kept no positions: rebuild them from its filled orders.
        const source = state?.positions ?? (fromVersion ? rebuild(orders) : {});
        for (const [symbol, qty] of Object.entries(source)) positions.set(symbol, qty);
      },
    };
  },
};

function rebuild(orders) {
  const out = {};
  for (const o of orders) if (o.status === 'filled') out[o.symbol] = (out[o.symbol] ?? 0) + (o.side === 'buy' ? o.quantity : -o.quantity);
  return out;
}
