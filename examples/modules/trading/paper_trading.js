// Paper trading v1: fills market orders at the simulator's quote.
export default {
  type: 'TRADING',
  async create(ctx) {
    let orders = ctx.previousState?.orders ?? [];
    let nextId = ctx.previousState?.nextId ?? 1;
    const validate = (order) => {
      if (!order || typeof order !== 'object') throw new TypeError('order must be an object');
      if (!['buy', 'sell'].includes(order.side)) throw new TypeError('order.side must be "buy" or "sell"');
      if (!(Number(order.quantity) > 0)) throw new TypeError('order.quantity must be positive');
      if (typeof order.symbol !== 'string' || order.symbol === '') throw new TypeError('order.symbol is required');
    };
    return {
      /** { symbol, side, quantity } -> { id, status, price } */
      async placeOrder(order) {
        validate(order);
        const { price } = await ctx.dependencies.market_simulator.quote({ symbol: order.symbol });
        const filled = { id: nextId++, symbol: order.symbol, side: order.side, quantity: Number(order.quantity), price, status: 'filled' };
        orders.push(filled);
        return filled;
      },
      async orders() {
        return orders;
      },
      exportState: () => ({ orders, nextId }),
      importState(state) {
        orders = Array.isArray(state?.orders) ? state.orders : [];
        nextId = Number(state?.nextId ?? orders.length + 1);
      },
    };
  },
};
