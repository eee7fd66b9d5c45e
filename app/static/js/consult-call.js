// The video call: waiting room, admit, browser-to-browser WebRTC (the server never sees media), mute,
// camera off, switch camera, screen sharing, a connection-quality indicator from getStats(), and recovery:
// an ICE restart when the network changes or ICE fails, and a rejoin after a reload.
//
// Signaling (signaling/server.py) relays offers, answers and candidates between the people in the call.
// Whoever is already in the call offers a connection to whoever arrives ("peer-joined"); after that either
// side may renegotiate (an ICE restart, a screen share), with the "perfect negotiation" pattern deciding
// collisions: the side whose connection id sorts higher is the polite one and gives way.
import { io } from '../vendor/socket.io-client/socket.io.esm.min.js'
import { setUpPrecall } from './consult-precall.js'
import { adviceFor, cameraCount, getMedia, postJson, readStats } from './consult-media.js'

const root = document.getElementById('consult')
const $ = id => document.getElementById(id)
const seat = root.dataset.seat
const appointment = Number(root.dataset.appointment)
const rejoinKey = `verity-consult-${appointment}-${seat}`
const otherName = seat === 'clinician' ? root.dataset.patientName : 'your clinician'

const call = {
  socket: null,
  sid: null,
  stream: null,
  iceServers: [],
  peers: new Map(),
  sharing: null,
  facing: 'user',
  muted: false,
  cameraOff: false,
  ended: false,
  autoAdmit: root.dataset.autoAdmit === '1',
  admitting: false,
  quality: null
}

function say (id, text) {
  const element = $(id)
  if (element) element.textContent = text
}

function status (text) { say('call-status', text || '') }

function show (id, visible) {
  const element = $(id)
  if (element) element.hidden = !visible
}

// Media -------------------------------------------------------------------------------------------

async function ensureMedia (audioOnly) {
  if (call.stream && (call.stream.getTracks().length || audioOnly)) {
    $('local-video').srcObject = call.stream
    return call.stream
  }
  try {
    call.stream = await getMedia({ audioOnly })
  } catch (error) {
    status(adviceFor(error))
    try {
      call.stream = audioOnly ? new MediaStream() : await getMedia({ audioOnly: true })
    } catch (e) {
      call.stream = new MediaStream() // receive only: they can still see and hear the other person
    }
  }
  $('local-video').srcObject = call.stream
  if (!call.stream.getVideoTracks().length) show('camera', false)
  if (await cameraCount() > 1 && call.stream.getVideoTracks().length) show('switch-camera', true)
  return call.stream
}

function outgoingVideo () {
  return call.sharing || call.stream.getVideoTracks()[0] || null
}

function sendMediaState () {
  if (!call.socket || !call.socket.connected) return
  call.socket.emit('media', { muted: call.muted, camera: !call.cameraOff && !!call.stream.getVideoTracks().length, sharing: !!call.sharing })
}

async function replaceVideo (track) {
  for (const peer of call.peers.values()) {
    const sender = peer.pc.getSenders().find(s => s.track && s.track.kind === 'video') ||
      peer.pc.getTransceivers().find(t => t.receiver.track && t.receiver.track.kind === 'video' && t.direction !== 'inactive')?.sender
    if (sender) {
      await sender.replaceTrack(track)
      const transceiver = peer.pc.getTransceivers().find(t => t.sender === sender)
      if (transceiver && track && transceiver.direction === 'recvonly') transceiver.direction = 'sendrecv' // renegotiates
    } else if (track) {
      peer.pc.addTrack(track, call.stream)
    }
  }
  $('local-video').srcObject = track ? new MediaStream([track]) : call.stream
}

// Peers -------------------------------------------------------------------------------------------

function videoFor (peer) {
  if (peer.video) return peer.video
  const main = $('remote-video')
  const taken = [...call.peers.values()].some(p => p !== peer && p.video === main)
  if (!taken) {
    peer.video = main
  } else {
    peer.video = document.createElement('video')
    peer.video.className = 'consult-video consult-video--tile'
    peer.video.autoplay = true
    peer.video.playsInline = true
    main.parentElement.appendChild(peer.video)
  }
  return peer.video
}

function send (to, payload) {
  if (call.socket && call.socket.connected) call.socket.emit('signal', { to, ...payload })
}

function createPeer (remoteSid, remoteSeat) {
  closePeer(remoteSid)
  const pc = new RTCPeerConnection({ iceServers: call.iceServers })
  const peer = { sid: remoteSid, seat: remoteSeat, pc, polite: call.sid > remoteSid, makingOffer: false, ignoreOffer: false, queue: Promise.resolve(), restartTimer: null, stream: new MediaStream(), video: null }
  call.peers.set(remoteSid, peer)
  for (const track of call.stream.getAudioTracks()) pc.addTrack(track, call.stream)
  const video = outgoingVideo()
  if (video) pc.addTrack(video, call.stream)
  if (!call.stream.getAudioTracks().length) pc.addTransceiver('audio', { direction: 'recvonly' })
  if (!video) pc.addTransceiver('video', { direction: 'recvonly' })

  pc.ontrack = ({ track }) => {
    peer.stream.addTrack(track)
    const element = videoFor(peer)
    if (element.srcObject !== peer.stream) element.srcObject = peer.stream
    track.addEventListener('unmute', () => { element.play().catch(() => {}) })
  }
  pc.onicecandidate = ({ candidate }) => {
    if (candidate) send(remoteSid, { candidate: candidate.toJSON() })
  }
  pc.onnegotiationneeded = async () => {
    try {
      peer.makingOffer = true
      await pc.setLocalDescription()
      send(remoteSid, { description: { type: pc.localDescription.type, sdp: pc.localDescription.sdp } })
    } catch (error) {
      console.warn('negotiation failed', error)
    } finally {
      peer.makingOffer = false
    }
  }
  pc.oniceconnectionstatechange = () => onIceState(peer)
  return peer
}

function closePeer (remoteSid) {
  const peer = call.peers.get(remoteSid)
  if (!peer) return
  window.clearTimeout(peer.restartTimer)
  peer.pc.close()
  if (peer.video) {
    peer.video.srcObject = null
    if (peer.video !== $('remote-video')) peer.video.remove()
  }
  call.peers.delete(remoteSid)
}

function closeAllPeers () {
  for (const sid of [...call.peers.keys()]) closePeer(sid)
}

function onIceState (peer) {
  const state = peer.pc.iceConnectionState
  root.dataset.ice = state
  if (state === 'connected' || state === 'completed') {
    window.clearTimeout(peer.restartTimer)
    peer.restartTimer = null
    status('')
  } else if (state === 'disconnected') {
    status('Reconnecting…')
    if (!peer.restartTimer) {
      peer.restartTimer = window.setTimeout(() => {
        peer.restartTimer = null
        if (peer.pc.iceConnectionState === 'disconnected' || peer.pc.iceConnectionState === 'failed') peer.pc.restartIce()
      }, 2000)
    }
  } else if (state === 'failed') {
    status('Reconnecting…')
    peer.pc.restartIce()
  }
}

function restartAll () {
  for (const peer of call.peers.values()) {
    if (peer.pc.connectionState !== 'closed') peer.pc.restartIce()
  }
}

async function handleSignal (peer, { description, candidate }) {
  const pc = peer.pc
  if (description) {
    const collision = description.type === 'offer' && (peer.makingOffer || pc.signalingState !== 'stable')
    peer.ignoreOffer = !peer.polite && collision
    if (peer.ignoreOffer) return
    await pc.setRemoteDescription(description)
    if (description.type === 'offer') {
      await pc.setLocalDescription()
      send(peer.sid, { description: { type: pc.localDescription.type, sdp: pc.localDescription.sdp } })
    }
  } else if (candidate) {
    try {
      await pc.addIceCandidate(candidate)
    } catch (error) {
      if (!peer.ignoreOffer) console.warn('candidate refused', error)
    }
  }
}

function onSignal (message) {
  if (message.to !== call.sid) return
  let peer = call.peers.get(message.from)
  if (!peer) {
    if (!message.description || message.description.type !== 'offer') return
    peer = createPeer(message.from, null)
  }
  // One at a time per peer: a candidate must not overtake the offer it belongs to.
  peer.queue = peer.queue.then(() => handleSignal(peer, message)).catch(error => console.warn('signal', error))
}

// The room ---------------------------------------------------------------------------------------

function showCall () {
  show('precall', false)
  show('join-buttons', false)
  show('lobby', false)
  show('call', true)
  show('after-call', false)
  root.dataset.phase = 'call'
  if (!call.peers.size) status(seat === 'clinician' ? '' : `Connecting to ${otherName}…`)
}

function showLobby (text) {
  show('precall', false)
  show('join-buttons', false)
  show('lobby', true)
  root.dataset.phase = 'lobby'
  say('lobby-status', text)
}

function since (iso) {
  const date = iso ? new Date(iso) : new Date()
  return date.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' })
}

function onSeats (seats) {
  if (seat !== 'clinician') {
    const clinician = seats.find(s => s.seat === 'clinician' && s.state !== 'left')
    if (root.dataset.phase === 'lobby') {
      say('lobby-status', clinician ? 'Your clinician is online and will let you in shortly.' : 'Waiting for your clinician to let you in.')
    }
    return
  }
  const patient = seats.find(s => s.seat === 'patient')
  const guest = seats.find(s => s.seat === 'guest' && s.state === 'waiting')
  const waiting = (patient && patient.state === 'waiting') || guest
  const admit = $('admit')
  if (patient && patient.state === 'waiting') {
    say('waiting-status', `${otherName} is waiting (since ${since(patient.since)}).`)
  } else if (guest) {
    say('waiting-status', `${guest.name || 'Your guest'} is waiting (since ${since(guest.since)}).`)
  } else if (patient && patient.state === 'in_call') {
    say('waiting-status', `${otherName} is in the call.`)
  } else if (patient && patient.state === 'left') {
    say('waiting-status', `${otherName} has left.`)
  }
  if (admit) admit.disabled = !waiting
  if (!call.peers.size && root.dataset.peer !== 'lost') {
    status(waiting ? `${otherName} will appear here when you admit them.` : `Waiting for ${otherName} to join.`)
  }
  show('admit-group', !(patient && patient.state === 'in_call') || !!guest)
  root.dataset.waiting = waiting ? '1' : '0'
  if (waiting && call.autoAdmit) {
    call.autoAdmit = false
    admitNow()
  }
}

const seatsNow = new Map()

function onPresence (presence) {
  seatsNow.set(presence.seat, { ...presence, since: presence.state === 'waiting' ? new Date().toISOString() : null })
  onSeats([...seatsNow.values()])
}

async function admitNow () {
  if (call.admitting) return
  call.admitting = true
  $('admit').disabled = true
  root.dataset.admittedAt = String(performance.now())
  const reply = await call.socket.timeout(10000).emitWithAck('admit').catch(() => ({ ok: false, error: 'No answer from the server.' }))
  call.admitting = false
  if (!reply.ok) {
    say('waiting-status', reply.error || 'Could not admit.')
    $('admit').disabled = false
    return
  }
  say('waiting-status', `Connecting to ${otherName}…`)
}

async function onAdmitted () {
  if (seat === 'clinician' || root.dataset.phase !== 'lobby') return
  const reply = await call.socket.emitWithAck('enter')
  if (reply && reply.ok) showCall()
}

function onPeerLeft ({ sid }) {
  closePeer(sid)
  if (!call.peers.size && !call.ended) {
    status(`The other person has lost connection. Waiting for them to come back…`)
    root.dataset.peer = 'lost'
  }
}

function finish (text) {
  call.ended = true
  sessionStorage.removeItem(rejoinKey)
  closeAllPeers()
  if (call.socket) call.socket.disconnect()
  if (call.stream) call.stream.getTracks().forEach(t => t.stop())
  if (call.sharing) call.sharing.stop()
  show('call', false)
  show('lobby', false)
  show('after-call', true)
  root.dataset.phase = 'ended'
  if (text) say('after-call-text', text)
}

function onEnded () {
  if (seat === 'clinician' && root.dataset.endUrl) {
    finish()
    window.location.assign(root.dataset.endUrl)
    return
  }
  finish('Thank you. Your clinician has ended the consultation; you can close this page.')
}

function connect () {
  const socket = io({
    transports: ['websocket'],
    reconnectionDelayMax: 5000,
    // A fresh single-use token for every connection, the reconnections included.
    auth: callback => {
      postJson(root.dataset.tokenUrl)
        .then(ticket => {
          call.iceServers = ticket.ice_servers
          callback({ token: ticket.token, appointment })
        })
        .catch(error => {
          status(error.message)
          say('lobby-status', error.message)
          callback({})
        })
    }
  })
  call.socket = socket
  socket.on('connect', async () => {
    call.sid = socket.id
    root.dataset.sid = socket.id
    closeAllPeers() // a new connection id: whoever is in the call offers to it afresh
    const hello = await socket.emitWithAck('hello')
    if (!hello || !hello.ok) return
    seatsNow.clear()
    for (const s of hello.seats) seatsNow.set(s.seat, s)
    if (hello.state === 'in_call') {
      showCall()
    } else if (seat !== 'clinician') {
      showLobby('Waiting for your clinician to let you in.')
    }
    onSeats(hello.seats)
    sendMediaState()
  })
  socket.on('connect_error', error => {
    if (socket.active) {
      status('Reconnecting…')
    } else {
      status(`Could not join: ${error.message}`)
      say('lobby-status', `Could not join: ${error.message}`)
    }
  })
  socket.on('disconnect', reason => {
    if (call.ended) return
    status('Reconnecting…')
    if (reason === 'io server disconnect' && !call.replaced) window.setTimeout(() => socket.connect(), 1000)
  })
  socket.on('presence', onPresence)
  socket.on('admitted', onAdmitted)
  socket.on('peer-joined', ({ sid, seat: theirSeat }) => {
    root.dataset.peer = 'joined'
    createPeer(sid, theirSeat)
    status(`Connecting to ${theirSeat === 'guest' ? 'your guest' : otherName}…`)
    sendMediaState()
  })
  socket.on('peer-left', onPeerLeft)
  socket.on('signal', onSignal)
  socket.on('media', ({ seat: theirSeat, muted, camera, sharing }) => {
    const parts = []
    if (muted) parts.push('muted')
    if (!camera && !sharing) parts.push('camera off')
    if (sharing) parts.push('sharing their screen')
    const who = theirSeat === 'clinician' ? 'Your clinician' : theirSeat === 'patient' ? otherName : 'Your guest'
    say('remote-media', parts.length ? `${who}: ${parts.join(', ')}` : '')
  })
  socket.on('ended', onEnded)
  socket.on('replaced', () => {
    call.replaced = true
    finish('You joined this consultation from another window or device, so this one has been closed.')
    show('rejoin', true)
  })
  socket.on('problem', problem => console.warn('signaling:', problem.event, problem.message))
}

// Quality ---------------------------------------------------------------------------------------

async function measureQuality () {
  const peer = [...call.peers.values()].find(p => p.pc.connectionState === 'connected')
  const label = $('quality-label')
  const quality = $('quality')
  if (!peer) {
    call.quality = null
    quality.dataset.level = 'none'
    label.textContent = call.peers.size ? 'connecting' : 'not connected'
    say('quality-detail', '')
    return
  }
  const now = await readStats(peer.pc)
  const before = call.quality
  call.quality = now
  if (!before) return
  const seconds = Math.max(0.001, (now.at - before.at) / 1000)
  const lost = Math.max(0, now.packetsLost - before.packetsLost)
  const received = Math.max(0, now.packetsReceived - before.packetsReceived)
  const loss = lost + received ? lost / (lost + received) : 0
  const kbps = ((now.videoBytes + now.audioBytes) - (before.videoBytes + before.audioBytes)) * 8 / seconds / 1000
  const rttMs = now.rtt === null ? null : Math.round(now.rtt * 1000)
  let level = 'good'
  if ((rttMs !== null && rttMs > 600) || loss > 0.08 || kbps < 50) level = 'poor'
  else if ((rttMs !== null && rttMs > 300) || loss > 0.02 || kbps < 200) level = 'fair'
  quality.dataset.level = level
  label.textContent = { good: 'good', fair: 'fair', poor: 'poor' }[level]
  say('quality-detail', `(${rttMs === null ? '–' : rttMs} ms round trip, ${(loss * 100).toFixed(1)}% loss, ${Math.round(kbps)} kbit/s)`)
}

// Controls --------------------------------------------------------------------------------------

function press (id, pressed, text) {
  const button = $(id)
  button.setAttribute('aria-pressed', String(pressed))
  button.textContent = text
}

function wireControls () {
  $('mute').addEventListener('click', () => {
    call.muted = !call.muted
    call.stream.getAudioTracks().forEach(t => { t.enabled = !call.muted })
    press('mute', call.muted, call.muted ? 'Unmute' : 'Mute')
    sendMediaState()
  })
  $('camera').addEventListener('click', () => {
    call.cameraOff = !call.cameraOff
    call.stream.getVideoTracks().forEach(t => { t.enabled = !call.cameraOff })
    press('camera', call.cameraOff, call.cameraOff ? 'Turn camera on' : 'Turn camera off')
    sendMediaState()
  })
  $('switch-camera').addEventListener('click', async () => {
    const facing = call.facing === 'user' ? 'environment' : 'user'
    try {
      const fresh = await navigator.mediaDevices.getUserMedia({ video: { facingMode: { exact: facing } } })
      const track = fresh.getVideoTracks()[0]
      const old = call.stream.getVideoTracks()[0]
      track.enabled = !call.cameraOff
      call.stream.addTrack(track)
      if (old) { call.stream.removeTrack(old); old.stop() }
      call.facing = facing
      if (!call.sharing) await replaceVideo(track)
    } catch (error) {
      status('The other camera could not be started.')
    }
  })
  $('share').addEventListener('click', async () => {
    if (call.sharing) return stopSharing()
    try {
      const display = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false })
      call.sharing = display.getVideoTracks()[0]
      call.sharing.addEventListener('ended', stopSharing)
      await replaceVideo(call.sharing)
      press('share', true, 'Stop sharing')
      sendMediaState()
    } catch (error) {
      if (error.name !== 'NotAllowedError') status('Your screen could not be shared.')
    }
  })
  const end = $('end')
  if (end) {
    end.addEventListener('click', async () => {
      end.disabled = true
      const reply = await call.socket.timeout(10000).emitWithAck('end').catch(() => ({ ok: false, error: 'No answer from the server.' }))
      if (!reply.ok) {
        status(reply.error)
        end.disabled = false
        return
      }
      onEnded()
    })
  }
  const leave = $('leave')
  if (leave) {
    leave.addEventListener('click', () => {
      finish('You have left the consultation. If this was a mistake, rejoin: your clinician is still there.')
      show('rejoin', true)
    })
  }
  $('rejoin').addEventListener('click', () => window.location.reload())
  const admit = $('admit')
  if (admit) admit.addEventListener('click', admitNow)
}

async function stopSharing () {
  if (!call.sharing) return
  const track = call.sharing
  call.sharing = null
  track.stop()
  await replaceVideo(call.stream.getVideoTracks()[0] || null)
  press('share', false, 'Share screen')
  sendMediaState()
}

// Start ------------------------------------------------------------------------------------------

async function join (audioOnly) {
  if (audioOnly && call.stream) {
    call.stream.getVideoTracks().forEach(t => { t.stop(); call.stream.removeTrack(t) })
  }
  await ensureMedia(audioOnly)
  sessionStorage.setItem(rejoinKey, audioOnly ? 'audio' : 'video')
  showLobby('Connecting to the waiting room…')
  connect()
}

wireControls()
if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) show('share', false) // phones cannot share
window.addEventListener('online', restartAll)
if (navigator.connection && navigator.connection.addEventListener) navigator.connection.addEventListener('change', restartAll)
window.setInterval(() => { measureQuality().catch(() => {}) }, 2000)

if (seat === 'clinician') {
  ensureMedia(false).then(connect)
} else {
  const precall = setUpPrecall(root, { onMedia: stream => { call.stream = stream } })
  const joinButton = $('join')
  if (joinButton) {
    joinButton.addEventListener('click', () => { if (precall) precall.stop(); join(false) })
    $('join-audio').addEventListener('click', () => { if (precall) precall.stop(); join(true) })
    const before = sessionStorage.getItem(rejoinKey)
    if (before) join(before === 'audio') // a reload rejoins the same call
  }
}
