/* The demo page (index.html): wires the form to RelayClient from relay-client.js. */
/* global RelayClient -- defined by relay-client.js, loaded before this script */
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var statusEl = $('status');
  var notice = $('notice');
  var messages = $('messages');
  var MAX_MESSAGES = 500; // keep a long-running tab light

  // ?urls=ws://a/ws,ws://b/ws overrides the default: this page's own relay.
  var param = new URLSearchParams(location.search).get('urls');
  var urls = param
    ? param.split(',').map(function (u) { return u.trim(); }).filter(Boolean)
    : [(location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws'];

  // A token from the form (or from #token=<JWT> in the page's address: fragments never reach a server). The field is
  // read on every connect, reconnect and refresh, so pasting a newer token there is enough to keep going.
  var tokenInput = $('token');
  var fragmentToken = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fragmentToken) tokenInput.value = fragmentToken;
  function currentToken() {
    return tokenInput.value.trim();
  }

  var client;

  /** (Re)starts the client: with a token when the field has one, without one otherwise. */
  function start() {
    if (client) client.close();
    var options = { urls: urls };
    if (currentToken()) options.getToken = currentToken;
    try {
      client = new RelayClient(options);
    } catch (err) {
      setStatus('closed', 'cannot start: ' + err.message);
      return;
    }
    // Reachable from the devtools console (and the end-to-end test) as window.relayClient.
    window.relayClient = client;
    listen(client);
    showRooms();
    setStatus('connecting', 'connecting to ' + urls[0] + (options.getToken ? ' with a token' : '') + '…');
    client.connect().catch(function () { /* only rejects on close(); the status shows it */ });
  }

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }
  function say(text) { notice.textContent = text; }
  function shortId(id) { return typeof id === 'string' ? id.slice(0, 8) : String(id); }

  function listen(client) {
  client.on('open', function (welcome) {
    setStatus('open', 'connected to instance ' + welcome.instanceId + ' (' + welcome.url + ') as ' + shortId(welcome.connectionId));
    say('');
  });
  client.on('reconnecting', function (e) {
    setStatus('reconnecting', 'reconnecting (attempt ' + e.attempt + ', next ' + e.url + ' in ' + e.delayMs + ' ms)');
  });
  client.on('state', function (state) {
    if (state === 'connecting') setStatus('connecting', 'connecting to ' + client.url + '…');
    if (state === 'closed') setStatus('closed', 'closed');
  });
  client.on('error', function (err) {
    // Socket errors are followed by a reconnect the status already shows; relay errors deserve a line.
    if (err.code !== 'socket_error') say(err.message + ' (' + err.code + ')');
  });
  client.on('message', function (m) {
    var li = document.createElement('li');
    var text = document.createElement('span');
    text.className = 'text';
    text.textContent = typeof m.data === 'string' ? m.data : JSON.stringify(m.data);
    var meta = document.createElement('span');
    meta.className = 'meta';
    // The frame names the sender's connection; the sender's instance only if the relay adds it.
    var via = m.instanceId ? 'sent on instance ' + m.instanceId
      : 'received via instance ' + ((client.welcome && client.welcome.instanceId) || '?');
    meta.textContent = (m.room ? 'room ' + m.room : 'broadcast') + ' · from connection ' + m.from +
      ' · ' + via + (m.seq !== undefined ? ' · seq ' + m.seq : '');
    li.appendChild(text);
    li.appendChild(meta);
    messages.appendChild(li);
    while (messages.children.length > MAX_MESSAGES) messages.removeChild(messages.firstChild);
  });
  client.on('close', function (e) {
    if (e.code === 4001) say('The token expired; paste a new one and connect again, or the page keeps retrying with this one.');
  });
  }

  function showRooms() {
    var rooms = client ? client.rooms() : [];
    $('rooms').textContent = 'Rooms: ' + (rooms.length ? rooms.join(', ') : 'none');
  }

  $('join-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var room = $('room').value.trim();
    client.join(room).then(function () {
      say('');
      showRooms();
    }, function (err) {
      say('Could not join "' + room + '": ' + err.message + ' (' + err.code + ')');
    });
  });

  $('send-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var input = $('message');
    var text = input.value;
    if (!text) return;
    var room = $('room').value.trim();
    client.publish(room, text).then(function () {
      input.value = '';
      say('');
    }, function (err) {
      say('Not sent: ' + err.message + ' (' + err.code + ')');
    });
  });

  $('token-form').addEventListener('submit', function (e) {
    e.preventDefault();
    say('');
    start();
  });

  start();
})();
