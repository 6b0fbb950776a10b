import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { LatencyWindow } from './emf-metrics';
import type { ErrorCode } from './protocol';

/** The relay's Prometheus metrics, on a registry of its own so several relays can live in one process (tests). */
export class RelayMetrics {
  readonly registry = new Registry();
  readonly messagesIn: Counter;
  readonly messagesOut: Counter;
  readonly publishErrors: Counter;
  readonly slowConsumers: Counter;
  readonly tokensExpired: Counter;
  readonly errors: Counter<'code'>;
  readonly upgradesRefused: Counter<'reason'>;
  readonly clientErrors: Counter<'status'>;
  readonly publishLatency: Histogram;
  /** The same latencies per EMF interval (the reporter takes them). */
  readonly publishLatencyWindow = new LatencyWindow();

  /** `historyBytes`: the in-memory backplane's history bytes (relay_history_bytes); absent on Redis. */
  constructor(sample: { connections: () => number; rooms: () => number; maxConnections?: number; historyBytes?: () => number }) {
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
    const historyBytes = sample.historyBytes;
    if (historyBytes !== undefined) {
      new Gauge({
        name: 'relay_history_bytes',
        help: 'Bytes the in-memory backplane holds in room histories (capped by RELAY_HISTORY_MEMORY_MAX_BYTES).',
        registers,
        collect() {
          this.set(historyBytes());
        },
      });
    }
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
    this.tokensExpired = new Counter({
      name: 'relay_tokens_expired_total',
      help: 'Connections closed with 4001 because their token expired and no valid refresh came.',
      registers,
    });
    this.errors = new Counter({
      name: 'relay_errors_total',
      help: 'Error frames sent to clients, by code.',
      labelNames: ['code'],
      registers,
    });
    new Gauge({
      name: 'relay_connections_max',
      help: 'RELAY_MAX_CONNECTIONS: connections this instance accepts before refusing upgrades with 503.',
      registers,
    }).set(sample.maxConnections ?? 0);
    this.upgradesRefused = new Counter({
      name: 'relay_upgrades_refused_total',
      help: 'WebSocket upgrades answered with an HTTP error instead of 101, by reason (the JSON error field).',
      labelNames: ['reason'],
      registers,
    });
    this.clientErrors = new Counter({
      name: 'relay_http_client_errors_total',
      help: 'Connections the HTTP parser refused (malformed, oversized or too slow requests), by the status answered.',
      labelNames: ['status'],
      registers,
    });
    this.publishLatency = new Histogram({
      name: 'relay_publish_latency_seconds',
      help: 'Time from receiving a publish frame to the backplane accepting it (append with history, publish without).',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** One publish the backplane accepted, `ms` after its frame arrived. */
  observePublish(ms: number): void {
    this.publishLatency.observe(ms / 1000);
    this.publishLatencyWindow.record(ms);
  }

  countError(code: ErrorCode): void {
    this.errors.inc({ code });
  }
}
