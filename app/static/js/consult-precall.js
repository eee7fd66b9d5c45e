// The pre-call check: camera and microphone permission, a preview, a level meter, and a real WebRTC
// round trip to the server's echo peer (signaling/echo.py), which sends the media straight back.
import { io } from '../vendor/socket.io-client/socket.io.esm.min.js'
import { ADVICE, adviceFor, getMedia, meter, postJson, readStats, waitFor } from './consult-media.js'

function mark (item, state, text) {
  if (!item) return
  item.dataset.state = state
  item.querySelector('span').textContent = text
}

function advise (root, text) {
  const box = root.querySelector('#precall-advice')
  if (!box) return
  box.hidden = !text
  root.querySelector('#precall-advice-text').textContent = text || ''
}

function gathered (pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve()
  return new Promise(resolve => {
    const done = () => { if (pc.iceGatheringState === 'complete') { pc.removeEventListener('icegatheringstatechange', done); resolve() } }
    pc.addEventListener('icegatheringstatechange', done)
    window.setTimeout(resolve, timeoutMs) // whatever was gathered by then
  })
}

// One round trip through the echo peer; resolves to {rttMs, video, audio} or throws.
export async function echoTest (tokenUrl, stream) {
  const ticket = await postJson(tokenUrl)
  const socket = io('/precall', { auth: { token: ticket.token }, transports: ['websocket'], reconnection: false })
  const pc = new RTCPeerConnection({ iceServers: ticket.ice_servers })
  try {
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('connect_error', reject)
    })
    for (const track of stream.getTracks()) pc.addTrack(track, stream)
    await pc.setLocalDescription(await pc.createOffer())
    await gathered(pc, 3000) // aiortc does not trickle: the offer goes with its candidates
    const reply = await socket.timeout(15000).emitWithAck('offer', { type: 'offer', sdp: pc.localDescription.sdp })
    if (!reply || !reply.ok) {
      const error = new Error(reply && reply.error)
      error.name = 'server'
      throw error
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp })
    try {
      await waitFor(() => pc.connectionState === 'connected', 10000)
    } catch (e) {
      const error = new Error('no connection')
      error.name = 'network'
      throw error
    }
    const wantVideo = stream.getVideoTracks().length > 0
    const figures = await waitFor(async () => {
      const now = await readStats(pc)
      const flowing = now.audioBytes > 0 && (!wantVideo || now.framesDecoded > 0)
      return flowing && now.rtt !== null ? now : null
    }, 10000, 200).catch(() => null)
    if (!figures) {
      const error = new Error('no media')
      error.name = 'network'
      throw error
    }
    return { rttMs: Math.round(figures.rtt * 1000), video: figures.framesDecoded, audio: figures.audioBytes }
  } finally {
    pc.close()
    socket.disconnect()
  }
}

// Wire the check's section: returns a controller whose `stream` is the media to join with.
export function setUpPrecall (root, { onMedia } = {}) {
  const section = root.querySelector('#precall')
  if (!section) return null
  const tokenUrl = section.dataset.tokenUrl
  const preview = section.querySelector('#precall-preview')
  const level = section.querySelector('#mic-level')
  const state = { stream: null, stopMeter: () => {}, result: null }

  async function run ({ audioOnly = false } = {}) {
    advise(section, '')
    state.stopMeter()
    if (state.stream) state.stream.getTracks().forEach(t => t.stop())
    state.stream = null
    mark(section.querySelector('#check-media'), 'running', 'checking…')
    try {
      state.stream = await getMedia({ audioOnly })
    } catch (error) {
      mark(section.querySelector('#check-media'), 'failed', error.name === 'NotAllowedError' ? 'blocked' : 'not working')
      advise(section, adviceFor(error))
      section.dataset.state = 'failed'
      return state
    }
    preview.srcObject = state.stream
    state.stopMeter = meter(state.stream, level)
    const video = state.stream.getVideoTracks().length > 0
    mark(section.querySelector('#check-media'), 'ok', video ? 'working' : 'microphone working (no camera)')
    if (onMedia) onMedia(state.stream)
    if (!tokenUrl) {
      section.dataset.state = 'ok'
      return state
    }
    mark(section.querySelector('#check-network'), 'running', 'checking…')
    try {
      state.result = await echoTest(tokenUrl, state.stream)
      mark(section.querySelector('#check-network'), 'ok', `working (round trip ${state.result.rttMs} ms)`)
      section.dataset.rtt = String(state.result.rttMs)
      section.dataset.state = 'ok'
    } catch (error) {
      mark(section.querySelector('#check-network'), 'failed', 'video could not get through')
      advise(section, ADVICE[error.name] || ADVICE.network)
      section.dataset.state = 'network-failed'
    }
    return state
  }

  const start = section.querySelector('#precall-start')
  start.addEventListener('click', async () => {
    start.disabled = true
    await run()
    start.disabled = false
    start.textContent = 'Check again'
  })
  return { run, state, stop () { state.stopMeter() } }
}
