import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ErrorCode } from './protocol';

/** The relay's Prometheus metrics, on a registry of its own so several relays can live in one process (tests). */
export class RelayMetrics {
  readonly registry = new Registry();
  readonly messagesIn: Counter;
  readonly messagesOut: Counter;
  readonly publishErrors: Counter;
  readonly slowConsumers: Counter;
  readonly errors: Counter<'code'>;

  constructor(sample: { connections: () => number; rooms: () => number }) {
    const registers = [this.registry];
    new Gauge({
      name: 'relay_connections',
      help: 'Open WebSocket connections on this instance.',
      registers,
      collect() {
        this.set(sample.connections());
      },
    });
    new Gauge({
      name: 'relay_rooms',
      help: 'Rooms with at least one member on this instance.',
      registers,
      collect() {
        this.set(sample.rooms());
      },
    });
    this.messagesIn = new Counter({ name: 'relay_messages_in_total', help: 'Publish frames accepted from local clients.', registers });
    this.messagesOut = new Counter({
      name: 'relay_messages_out_total',
      help: 'Message deliveries to local sockets (one per recipient).',
      registers,
    });
    this.publishErrors = new Counter({
      name: 'relay_backplane_publish_errors_total',
      help: 'Publishes the backplane failed to send to other instances.',
      registers,
    });
    this.slowConsumers = new Counter({
      name: 'relay_slow_consumers_total',
      help: 'Sockets closed with 1013 because their send buffer exceeded RELAY_SEND_BUFFER_BYTES.',
      registers,
    });
    this.errors = new Counter({
      name: 'relay_errors_total',
      help: 'Error frames sent to clients, by code.',
      labelNames: ['code'],
      registers,
    });
    collectDefaultMetrics({ register: this.registry });
  }

  countError(code: ErrorCode): void {
    this.errors.inc({ code });
  }
}
