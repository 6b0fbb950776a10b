/*
 * relay-client.js: the relay's WebSocket client for browsers and Node, with no dependencies and no build step.
 *
 * Browser: <script src="/relay-client.js"></script> defines the global `RelayClient`.
 * Node:    const { RelayClient } = require('./relay-client.js'); new RelayClient({ urls, WebSocket: require('ws') }).
 *
 * Requests (join, leave, publish, ping, presence) return promises settled by the relay's ack / pong / presence /
 * error frame. join(room, { presence: true }) also delivers the room's `joined` / `left` events.
 * After a disconnect the client reconnects with exponential backoff and jitter, rotating through `urls`,
 * and rejoins its rooms, asking for the messages it missed (`since`) when the relay numbers them.
 * With `getToken`, every connection gets a fresh token (`?token=`), and the client answers the relay's
 * `token_expiring` frame with a `refresh` carrying a new one, so the connection outlives its tokens.
 */
(function (root, factory) {
  'use strict';
  if (typeof module === 'object' && module && typeof module.exports === 'object') {
    module.exports = factory();
  } else {
    root.RelayClient = factory().RelayClient;
  }
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  var DEFAULTS = {
    backoff: { initialMs: 250, maxMs: 10000 },
    requestTimeoutMs: 10000,
    connectTimeoutMs: 10000,
  };
  var OPEN = 1; // WebSocket.OPEN, identical in browsers and ws
  // The relay's close code for a connection its application's backend ended (POST /api/disconnect): never reconnect.
  var CLOSE_DISCONNECTED = 4003;
  var EVENTS = ['open', 'message', 'close', 'reconnecting', 'error', 'state', 'resync', 'joined', 'left'];

  /**
   * @param {{ urls: string[], WebSocket?: Function, backoff?: { initialMs?: number, maxMs?: number },
   *           requestTimeoutMs?: number, connectTimeoutMs?: number, getToken?: () => string | Promise<string> }} options
   */
  function RelayClient(options) {
    if (!(this instanceof RelayClient)) throw relayError('invalid_option', 'RelayClient must be called with `new`.');
    var opts = options || {};
    var problems = [];

    if (!Array.isArray(opts.urls) || opts.urls.length === 0) {
      problems.push('options.urls must be a non-empty array of ws:// or wss:// URLs, got ' + describe(opts.urls));
    } else {
      opts.urls.forEach(function (url, i) {
        if (typeof url !== 'string' || !/^wss?:\/\/[^\s]+$/.test(url)) {
          problems.push('options.urls[' + i + '] must be a ws:// or wss:// URL, got ' + describe(url));
        }
      });
    }

    var Impl = opts.WebSocket !== undefined ? opts.WebSocket : typeof WebSocket !== 'undefined' ? WebSocket : undefined;
    if (typeof Impl !== 'function') {
      problems.push(
        'options.WebSocket must be a WebSocket constructor (in Node pass require("ws")); none was given and there is no global WebSocket'
      );
    }

    var backoff = opts.backoff || {};
    var initialMs = backoff.initialMs !== undefined ? backoff.initialMs : DEFAULTS.backoff.initialMs;
    var maxMs = backoff.maxMs !== undefined ? backoff.maxMs : DEFAULTS.backoff.maxMs;
    if (!isPositiveNumber(initialMs)) problems.push('options.backoff.initialMs must be a number > 0, got ' + describe(initialMs));
    if (!isPositiveNumber(maxMs)) problems.push('options.backoff.maxMs must be a number > 0, got ' + describe(maxMs));
    if (isPositiveNumber(initialMs) && isPositiveNumber(maxMs) && maxMs < initialMs) {
      problems.push('options.backoff.maxMs (' + maxMs + ') must be >= options.backoff.initialMs (' + initialMs + ')');
    }

    var requestTimeoutMs = opts.requestTimeoutMs !== undefined ? opts.requestTimeoutMs : DEFAULTS.requestTimeoutMs;
    var connectTimeoutMs = opts.connectTimeoutMs !== undefined ? opts.connectTimeoutMs : DEFAULTS.connectTimeoutMs;
    if (!isPositiveNumber(requestTimeoutMs)) {
      problems.push('options.requestTimeoutMs must be a number > 0, got ' + describe(requestTimeoutMs));
    }
    if (!isPositiveNumber(connectTimeoutMs)) {
      problems.push('options.connectTimeoutMs must be a number > 0, got ' + describe(connectTimeoutMs));
    }

    if (opts.getToken !== undefined && typeof opts.getToken !== 'function') {
      problems.push('options.getToken must be a function returning a token (or a promise of one), got ' + describe(opts.getToken));
    }

    if (problems.length > 0) throw relayError('invalid_option', 'Invalid RelayClient options: ' + problems.join('; ') + '.');

    this.urls = opts.urls.slice();
    this._WebSocket = Impl;
    this._backoff = { initialMs: initialMs, maxMs: maxMs };
    this._requestTimeoutMs = requestTimeoutMs;
    this._connectTimeoutMs = connectTimeoutMs;
    this._getToken = opts.getToken;
    this._refreshing = null; // the refresh in progress, if any
    this._opening = 0; // bumped by every _open and by close(), so a token that arrives late is dropped

    this.state = 'idle';
    this.url = undefined;
    this.welcome = undefined;
    this._urlIndex = 0;
    this._attempt = 0;
    this._socket = null;
    this._socketReady = false; // welcome received on the current socket: requests may be sent
    this._connectTimer = null;
    this._reconnectTimer = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> { resolve, reject, timer, expect }
    this._rooms = new Set(); // rooms to rejoin after a reconnect
    this._watched = new Set(); // rooms rejoined with presence: true
    this._lastSeen = new Map(); // room -> { seq, epoch } of the newest message seen
    this._listeners = {};
    this._openWaiters = [];
    var self = this;
    EVENTS.forEach(function (name) {
      self._listeners[name] = [];
    });
  }

  /** Subscribes to an event: open, message, close, reconnecting, error, state, resync. */
  RelayClient.prototype.on = function (event, fn) {
    checkEvent(event);
    if (typeof fn !== 'function') throw relayError('invalid_argument', 'on("' + event + '", fn): fn must be a function.');
    this._listeners[event].push(fn);
    return this;
  };

  /** Removes a listener added with on(). */
  RelayClient.prototype.off = function (event, fn) {
    checkEvent(event);
    this._listeners[event] = this._listeners[event].filter(function (l) {
      return l !== fn;
    });
    return this;
  };

  /**
   * Starts connecting (and keeps reconnecting until close()). Resolves with the welcome frame once the
   * connection is open and the rooms are rejoined; rejects only when close() is called first.
   */
  RelayClient.prototype.connect = function () {
    var self = this;
    if (this.state === 'closed') return Promise.reject(relayError('closed', 'connect(): this client was closed; create a new RelayClient.'));
    var ready = new Promise(function (resolve, reject) {
      if (self.state === 'open') resolve(self.welcome);
      else self._openWaiters.push({ resolve: resolve, reject: reject });
    });
    if (this.state === 'idle') {
      this._setState('connecting');
      this._open();
    }
    return ready;
  };

  /**
   * Joins a room; resolves with the ack. The room is rejoined automatically after every reconnect.
   * With `{ presence: true }` the client also emits the room's `joined` and `left` events (members of every instance).
   */
  RelayClient.prototype.join = function (room, options) {
    var self = this;
    checkRoomArg('join', room);
    if (options !== undefined && (options === null || typeof options !== 'object' || Array.isArray(options))) {
      return Promise.reject(relayError('invalid_argument', 'join(room, options): options must be an object such as { presence: true }, got ' + describe(options) + '.'));
    }
    var presence = options === undefined ? undefined : options.presence;
    if (presence !== undefined && typeof presence !== 'boolean') {
      return Promise.reject(relayError('invalid_argument', 'join(room, { presence }): presence must be true or false, got ' + describe(presence) + '.'));
    }
    var frame = { type: 'join', room: room };
    if (presence !== undefined) frame.presence = presence;
    return this._request(frame, 'ack').then(function (ack) {
      self._rooms.add(room);
      if (presence === true) self._watched.add(room);
      else if (presence === false) self._watched.delete(room);
      self._notePosition(room, ack);
      return ack;
    });
  };

  /**
   * The members of a room the client is in, on every instance: resolves with the relay's reply
   * `{ type: "presence", room, members: [{ connectionId, user, instanceId, since }], count }` (`count` is exact;
   * `members` holds at most the relay's RELAY_PRESENCE_LIST_MAX of them).
   */
  RelayClient.prototype.presence = function (room) {
    checkRoomArg('presence', room);
    return this._request({ type: 'presence', room: room }, 'presence');
  };

  /** Leaves a room; it is no longer rejoined after a reconnect. */
  RelayClient.prototype.leave = function (room) {
    checkRoomArg('leave', room);
    this._rooms.delete(room);
    this._watched.delete(room);
    this._lastSeen.delete(room);
    return this._request({ type: 'leave', room: room }, 'ack');
  };

  /** Publishes `data` to a room, or to every client of every instance when room is null. */
  RelayClient.prototype.publish = function (room, data) {
    if (room !== null) checkRoomArg('publish', room);
    if (data === undefined) {
      return Promise.reject(relayError('invalid_argument', 'publish(room, data): data is undefined; pass any JSON value.'));
    }
    var frame = { type: 'publish', data: data };
    if (room !== null) frame.room = room;
    return this._request(frame, 'ack');
  };

  /** Round trip to the relay; resolves with the elapsed milliseconds. */
  RelayClient.prototype.ping = function () {
    var started = Date.now();
    return this._request({ type: 'ping' }, 'pong').then(function () {
      return Date.now() - started;
    });
  };

  /** Closes the connection for good: no reconnect, pending requests rejected with code "closed". */
  RelayClient.prototype.close = function () {
    if (this.state === 'closed') return;
    clearTimer(this, '_connectTimer');
    var socket = this._socket;
    this._detach();
    this._stop('closed', 'The client was closed');
    if (socket) {
      try {
        socket.close(1000, 'client closed');
      } catch {
        // Closing a socket that is still connecting throws in some implementations; it is discarded anyway.
      }
    }
    this._emit('close', { code: 1000, reason: 'client closed', url: this.url, willReconnect: false });
  };

  /**
   * Sends the relay a new token from `getToken()` for the open connection; resolves with the relay's ack
   * (`{ exp }`). The client does this by itself when the relay says the token is expiring.
   */
  RelayClient.prototype.refreshToken = function () {
    var self = this;
    if (typeof this._getToken !== 'function') {
      return Promise.reject(relayError('invalid_option', 'refreshToken(): this client has no getToken option.'));
    }
    if (this._refreshing) return this._refreshing;
    var socket = this._socket;
    var done = function () {
      if (self._refreshing === refreshing) self._refreshing = null;
    };
    var refreshing = callGetToken(this._getToken)
      .then(function (token) {
        if (self._socket !== socket) throw relayError('disconnected', 'refreshToken(): the connection changed while getToken() ran.');
        return self._request({ type: 'refresh', token: token }, 'ack');
      })
      .then(
        function (ack) {
          done();
          // Rooms the new token may not join were left by the relay: they are not rejoined after a reconnect.
          if (Array.isArray(ack.left)) {
            ack.left.forEach(function (room) {
              self._rooms.delete(room);
              self._watched.delete(room);
              self._lastSeen.delete(room);
            });
          }
          return ack;
        },
        function (err) {
          done();
          throw err;
        }
      );
    this._refreshing = refreshing;
    return refreshing;
  };

  /** Rooms currently joined (rejoined after a reconnect). */
  RelayClient.prototype.rooms = function () {
    return Array.from(this._rooms);
  };

  // ---- internals ----

  RelayClient.prototype._open = function () {
    var self = this;
    var url = this.urls[this._urlIndex % this.urls.length];
    this.url = url;
    var opening = ++this._opening;
    if (typeof this._getToken !== 'function') {
      this._openSocket(url, connectTarget(url));
      return;
    }
    // A fresh token for every connection: the one the last connection used may have expired meanwhile. A getToken()
    // that never answers counts as a failed attempt after connectTimeoutMs, like a relay that never says welcome.
    var failed = function (err) {
      if (self._opening !== opening || self.state === 'closed') return;
      self._opening++;
      clearTimeout(tokenTimer);
      self._emit('error', wrapError('token_failed', 'getToken() failed before connecting to ' + url + ': ' + messageOf(err), err));
      self._scheduleReconnect();
    };
    var tokenTimer = setTimeout(function () {
      failed(new Error('no token within ' + self._connectTimeoutMs + ' ms'));
    }, this._connectTimeoutMs);
    unref(tokenTimer);
    callGetToken(this._getToken).then(function (token) {
      if (self._opening !== opening || self.state === 'closed') return;
      clearTimeout(tokenTimer);
      self._openSocket(url, connectTarget(url, token));
    }, failed);
  };

  /** Opens the socket to `target` (`url` with the token, if any); `url` is the one reported in events. */
  RelayClient.prototype._openSocket = function (url, target) {
    var self = this;
    var socket;
    try {
      socket = new this._WebSocket(target);
    } catch (err) {
      this._emit('error', wrapError('connect_failed', 'Could not open ' + url + ': ' + messageOf(err), err));
      this._scheduleReconnect();
      return;
    }
    this._socket = socket;
    this._socketReady = false;

    // A connection that never says welcome (black-holed host, wrong endpoint) counts as a failure.
    this._connectTimer = setTimeout(function () {
      self._connectTimer = null;
      if (self._socket !== socket || self._socketReady) return;
      self._emit('error', relayError('connect_timeout', 'No welcome from ' + url + ' within ' + self._connectTimeoutMs + ' ms.'));
      self._lost(socket, 4000, 'connect timeout');
    }, this._connectTimeoutMs);
    unref(this._connectTimer);

    socket.onmessage = function (event) {
      if (self._socket !== socket) return;
      self._onFrame(event.data);
    };
    socket.onerror = function (event) {
      if (self._socket !== socket) return;
      var detail = event && event.message ? event.message : 'WebSocket error';
      self._emit('error', relayError('socket_error', 'Connection to ' + url + ' failed: ' + detail + '.'));
    };
    socket.onclose = function (event) {
      if (self._socket !== socket) return;
      self._lost(socket, event && event.code, event && event.reason);
    };
  };

  RelayClient.prototype._onFrame = function (raw) {
    var frame;
    try {
      frame = JSON.parse(typeof raw === 'string' ? raw : String(raw));
    } catch {
      this._emit('error', relayError('bad_frame', 'The relay sent a frame that is not JSON: ' + truncate(String(raw)) + '.'));
      return;
    }
    if (!frame || typeof frame !== 'object' || typeof frame.type !== 'string') {
      this._emit('error', relayError('bad_frame', 'The relay sent a frame without a type: ' + truncate(String(raw)) + '.'));
      return;
    }
    switch (frame.type) {
      case 'welcome':
        this._onWelcome(frame);
        return;
      case 'message':
        this._onMessage(frame);
        return;
      case 'resync':
        this._onResync(frame);
        return;
      case 'ack':
      case 'pong':
      case 'presence':
        this._settle(frame, null);
        return;
      case 'joined':
      case 'left':
        if (typeof frame.room === 'string' && frame.member && typeof frame.member === 'object') {
          this._emit(frame.type, { room: frame.room, member: frame.member });
        }
        return;
      case 'token_expiring':
        this._onTokenExpiring(frame);
        return;
      case 'error': {
        var err = relayError(typeof frame.code === 'string' ? frame.code : 'unknown_error', String(frame.message || 'The relay reported an error.'));
        if (frame.id !== undefined && this._pending.has(String(frame.id))) this._settle(frame, err);
        else this._emit('error', err);
        return;
      }
      default:
        // Newer relays may add frame types; ignoring them keeps old pages working.
        return;
    }
  };

  RelayClient.prototype._onWelcome = function (frame) {
    var self = this;
    clearTimer(this, '_connectTimer');
    this._socketReady = true;
    this.welcome = {
      connectionId: frame.connectionId,
      instanceId: frame.instanceId,
      protocol: frame.protocol,
      url: this.url,
    };
    var socket = this._socket;
    var rejoins = Array.from(this._rooms).map(function (room) {
      var frameOut = { type: 'join', room: room };
      if (self._watched.has(room)) frameOut.presence = true;
      var seen = self._lastSeen.get(room);
      if (seen) frameOut.since = { seq: seen.seq, epoch: seen.epoch };
      return self._request(frameOut, 'ack').then(function (ack) {
        if (seen && ack.recovered === false) {
          // The relay could not fill the gap (history expired, Redis lost it, or too many missed): the app must reload the room.
          self._emit('resync', { room: room, since: { seq: seen.seq, epoch: seen.epoch }, position: ack.position, reason: ack.reason });
          // What was seen belongs to a history the relay no longer serves; numbering continues from its position.
          self._lastSeen.delete(room);
        }
        self._notePosition(room, ack);
      }, function (err) {
        // The room stays in the set and the next reconnect tries again, unless the token forbids it.
        if (err.code === 'forbidden') {
          self._rooms.delete(room);
          self._watched.delete(room);
          self._lastSeen.delete(room);
        }
        if (self._socket === socket) {
          self._emit('error', wrapError(err.code || 'rejoin_failed', 'Rejoining room "' + room + '" failed: ' + err.message, err));
        }
      });
    });
    Promise.all(rejoins).then(function () {
      if (self._socket !== socket || self.state === 'closed') return;
      self._attempt = 0;
      self._setState('open');
      var waiters = self._openWaiters;
      self._openWaiters = [];
      waiters.forEach(function (w) {
        w.resolve(self.welcome);
      });
      self._emit('open', self.welcome);
    });
  };

  /** The relay closes the connection at frame.closeAt unless it gets a new token: fetch one and send it. */
  RelayClient.prototype._onTokenExpiring = function (frame) {
    var self = this;
    if (typeof this._getToken !== 'function') {
      this._emit('error', relayError('token_expiring', 'The token expires at ' + String(frame.exp) + ' and this client has no getToken option to refresh it; the relay will close the connection.'));
      return;
    }
    var socket = this._socket;
    this.refreshToken().catch(function (err) {
      if (self._socket !== socket) return;
      self._emit('error', wrapError(err.code || 'refresh_failed', 'Refreshing the token failed: ' + err.message, err));
    });
  };

  RelayClient.prototype._onMessage = function (frame) {
    if (typeof frame.room === 'string' && isSeq(frame.seq) && typeof frame.epoch === 'string') {
      var seen = this._lastSeen.get(frame.room);
      // A replay can overlap what already arrived; within one epoch seq only grows, so older ones are duplicates.
      if (seen && seen.epoch === frame.epoch && Number(frame.seq) <= Number(seen.seq)) return;
      this._lastSeen.set(frame.room, { seq: String(frame.seq), epoch: frame.epoch });
    }
    this._emit('message', frame);
  };

  /**
   * The relay says a room continues from a new position (its history started again, or a gap could not be filled):
   * what the page holds for that room is not continued by the messages that follow, so it emits `resync`.
   */
  RelayClient.prototype._onResync = function (frame) {
    var position = frame.position;
    if (typeof frame.room !== 'string' || !position || !isSeq(position.seq) || typeof position.epoch !== 'string') return;
    var seen = this._lastSeen.get(frame.room);
    this._lastSeen.set(frame.room, { seq: String(position.seq), epoch: position.epoch });
    this._emit('resync', {
      room: frame.room,
      since: seen ? { seq: seen.seq, epoch: seen.epoch } : undefined,
      position: { seq: String(position.seq), epoch: position.epoch },
      reason: frame.reason,
    });
  };

  /**
   * A join ack carries the room's position when the relay keeps history: the messages after it follow the ack, so
   * a client that has seen nothing yet (or could not recover) resumes from there after its next reconnect.
   */
  RelayClient.prototype._notePosition = function (room, ack) {
    var position = ack && ack.position;
    if (!position || !isSeq(position.seq) || typeof position.epoch !== 'string') return;
    var seen = this._lastSeen.get(room);
    if (seen && seen.epoch === position.epoch && Number(seen.seq) >= Number(position.seq)) return;
    this._lastSeen.set(room, { seq: String(position.seq), epoch: position.epoch });
  };

  RelayClient.prototype._request = function (frame, expect) {
    var self = this;
    if (this.state === 'closed') {
      return Promise.reject(relayError('closed', frame.type + ': this client was closed; create a new RelayClient.'));
    }
    var socket = this._socket;
    if (!socket || !this._socketReady || socket.readyState !== OPEN) {
      return Promise.reject(
        relayError('not_connected', frame.type + ': not connected to the relay (state "' + this.state + '"); wait for the "open" event.')
      );
    }
    var id = String(this._nextId++);
    frame.id = id;
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () {
        self._pending.delete(id);
        reject(relayError('timeout', frame.type + ' (id ' + id + '): no answer from ' + self.url + ' within ' + self._requestTimeoutMs + ' ms.'));
      }, self._requestTimeoutMs);
      unref(timer);
      self._pending.set(id, { resolve: resolve, reject: reject, timer: timer, expect: expect });
      try {
        socket.send(JSON.stringify(frame));
      } catch (err) {
        clearTimeout(timer);
        self._pending.delete(id);
        reject(wrapError('disconnected', frame.type + ': sending failed: ' + messageOf(err), err));
      }
    });
  };

  RelayClient.prototype._settle = function (frame, err) {
    var id = frame.id === undefined ? undefined : String(frame.id);
    var entry = id === undefined ? undefined : this._pending.get(id);
    if (!entry) return;
    this._pending.delete(id);
    clearTimeout(entry.timer);
    if (err) entry.reject(err);
    else if (frame.type !== entry.expect) {
      entry.reject(relayError('bad_frame', 'Expected ' + entry.expect + ' for request ' + id + ', got ' + frame.type + '.'));
    } else entry.resolve(frame);
  };

  RelayClient.prototype._lost = function (socket, code, reason) {
    if (this._socket !== socket) return;
    clearTimer(this, '_connectTimer');
    this._detach();
    try {
      socket.close();
    } catch {
      // Already closing or never opened.
    }
    if (code === CLOSE_DISCONNECTED) {
      // The application's backend ended this connection: the client stops for good, as after close().
      this._stop('disconnected_by_server', 'The server disconnected this client (close code 4003)');
      this._emit('close', { code: code, reason: reason || 'disconnected by the server', url: this.url, willReconnect: false, disconnected: true });
      return;
    }
    this._rejectPending('disconnected', 'The connection to ' + this.url + ' closed before the relay answered.');
    this._emit('close', { code: code, reason: reason || '', url: this.url, willReconnect: true });
    this._scheduleReconnect();
  };

  /** Ends the client for good: no reconnect; pending requests and connect() waiters reject with `code`. */
  RelayClient.prototype._stop = function (code, what) {
    this._opening++;
    clearTimer(this, '_reconnectTimer');
    this._rejectPending(code, what + ' before the relay answered.');
    var waiters = this._openWaiters;
    this._openWaiters = [];
    waiters.forEach(function (w) {
      w.reject(relayError(code, what + ' before the connection opened.'));
    });
    this._setState('closed');
  };

  RelayClient.prototype._scheduleReconnect = function () {
    var self = this;
    if (this.state === 'closed') return;
    this._attempt += 1;
    this._urlIndex = (this._urlIndex + 1) % this.urls.length; // rotate: the next URL may be the one that is alive
    var ceiling = Math.min(this._backoff.maxMs, this._backoff.initialMs * Math.pow(2, this._attempt - 1));
    // Jitter spreads reconnects of many clients that lost the same instance at the same moment.
    var delayMs = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this._setState('reconnecting');
    this._emit('reconnecting', { attempt: this._attempt, delayMs: delayMs, url: this.urls[this._urlIndex] });
    this._reconnectTimer = setTimeout(function () {
      self._reconnectTimer = null;
      if (self.state === 'closed') return;
      self._open();
    }, delayMs);
  };

  RelayClient.prototype._detach = function () {
    var socket = this._socket;
    this._socket = null;
    this._socketReady = false;
    if (socket) {
      socket.onmessage = null;
      socket.onclose = null;
      // Keep a no-op error handler: ws emits 'error' on sockets closed while connecting.
      socket.onerror = function () {};
    }
  };

  RelayClient.prototype._rejectPending = function (code, message) {
    var pending = this._pending;
    this._pending = new Map();
    pending.forEach(function (entry) {
      clearTimeout(entry.timer);
      entry.reject(relayError(code, message));
    });
  };

  RelayClient.prototype._setState = function (state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', state);
  };

  RelayClient.prototype._emit = function (event, payload) {
    var listeners = this._listeners[event].slice();
    for (var i = 0; i < listeners.length; i++) {
      try {
        listeners[i].call(this, payload);
      } catch (err) {
        // A throwing listener must not break the connection logic; surface it where it can be seen.
        if (event !== 'error') this._emit('error', wrapError('listener_error', 'A "' + event + '" listener threw: ' + messageOf(err), err));
        else if (typeof console !== 'undefined') console.error(err);
      }
    }
  };

  // ---- helpers ----

  function relayError(code, message) {
    var err = new Error(message);
    err.code = code;
    return err;
  }

  function wrapError(code, message, cause) {
    var err = relayError(code, message);
    err.cause = cause;
    return err;
  }

  function checkEvent(event) {
    if (EVENTS.indexOf(event) === -1) {
      throw relayError('invalid_argument', 'Unknown event ' + describe(event) + '; allowed: ' + EVENTS.join(', ') + '.');
    }
  }

  function checkRoomArg(method, room) {
    // Room syntax is the relay's to judge (it answers invalid_room); only the type is checked here.
    if (typeof room !== 'string') {
      throw relayError('invalid_argument', method + '(room): room must be a string, got ' + describe(room) + '.');
    }
  }

  function clearTimer(client, field) {
    if (client[field] !== null) {
      clearTimeout(client[field]);
      client[field] = null;
    }
  }

  function unref(timer) {
    // Node only: pending timers must not keep a process alive on their own.
    if (timer && typeof timer.unref === 'function') timer.unref();
  }

  /** getToken() called safely: a throw or a non-string result becomes a rejection. */
  function callGetToken(getToken) {
    return new Promise(function (resolve) {
      resolve(getToken());
    }).then(function (token) {
      if (typeof token !== 'string' || token.length === 0) {
        throw relayError('token_failed', 'getToken() must return a non-empty string (or a promise of one), got ' + describe(token) + '.');
      }
      return token;
    });
  }

  /** The URL with its `token` query parameter set (replacing one already there). */
  /**
   * The URL the socket opens: `url` with `protocol=2` (every request of this client carries an id, so it is still
   * acked; see docs/protocol.md) and the token, if any.
   */
  function connectTarget(url, token) {
    var u = new URL(url);
    u.searchParams.set('protocol', '2');
    if (token !== undefined) u.searchParams.set('token', token);
    return u.toString();
  }

  function isSeq(seq) {
    // The relay sends decimal strings; numbers are accepted from relays that sent them before.
    return (typeof seq === 'string' && /^[0-9]{1,15}$/.test(seq)) || (typeof seq === 'number' && seq >= 0 && seq % 1 === 0);
  }

  function isPositiveNumber(n) {
    return typeof n === 'number' && isFinite(n) && n > 0;
  }

  function describe(value) {
    if (value === undefined) return 'undefined';
    if (typeof value === 'function') return 'a function';
    try {
      return truncate(JSON.stringify(value));
    } catch {
      return String(value);
    }
  }

  function truncate(text) {
    return text.length > 120 ? text.slice(0, 117) + '...' : text;
  }

  function messageOf(err) {
    return err && err.message ? err.message : String(err);
  }

  return { RelayClient: RelayClient };
});
