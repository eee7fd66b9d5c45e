// Shared by the pre-call check and the call: camera and microphone, plain advice when they fail,
// the microphone level meter, CSRF-protected JSON posts, and reading getStats().

export const ADVICE = {
  NotAllowedError: 'Your browser is not allowing this page to use the camera or microphone. Allow them for this site (the camera icon in the address bar, or your phone\'s settings for this browser), then press “Start the check” again.',
  SecurityError: 'Your browser is not allowing this page to use the camera or microphone. Allow them for this site, then press “Start the check” again.',
  NotFoundError: 'No camera or microphone was found. Plug one in and press “Start the check” again, or join by audio only.',
  NotReadableError: 'Your camera or microphone is being used by another app (for example Zoom, Teams or FaceTime). Close it, then press “Start the check” again.',
  OverconstrainedError: 'Your camera could not be started with these settings. Try joining by audio only.',
  AbortError: 'Your camera or microphone stopped unexpectedly. Press “Start the check” again.',
  insecure: 'This browser cannot use a camera here. Use an up-to-date Chrome, Safari, Edge or Firefox.',
  network: 'Video could not get through your network. On a work or public Wi-Fi, try mobile data or your home network. You can still join: the clinic will help.',
  server: 'The connection check could not be started just now. You can still join the waiting room.'
}

export function adviceFor (error) {
  return ADVICE[error && error.name] || `Your camera or microphone could not be started (${error && error.name}). Try joining by audio only.`
}

export async function getMedia ({ audioOnly = false, facingMode = 'user' } = {}) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    const error = new Error('no mediaDevices')
    error.name = 'insecure'
    throw error
  }
  const video = audioOnly ? false : { facingMode, width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24 } }
  return navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true }, video })
}

export async function cameraCount () {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return 0
  const devices = await navigator.mediaDevices.enumerateDevices()
  return devices.filter(d => d.kind === 'videoinput').length
}

// A level meter for the first audio track: returns a function that stops it.
export function meter (stream, element) {
  const track = stream.getAudioTracks()[0]
  const Context = window.AudioContext || window.webkitAudioContext
  if (!track || !Context || !element) return () => {}
  const context = new Context()
  const analyser = context.createAnalyser()
  analyser.fftSize = 512
  context.createMediaStreamSource(new MediaStream([track])).connect(analyser)
  const samples = new Uint8Array(analyser.fftSize)
  context.resume().catch(() => {})
  const timer = window.setInterval(() => {
    analyser.getByteTimeDomainData(samples)
    let peak = 0
    for (const value of samples) peak = Math.max(peak, Math.abs(value - 128))
    element.value = Math.min(1, peak / 64)
  }, 100)
  return () => { window.clearInterval(timer); context.close().catch(() => {}) }
}

function csrfToken () {
  try {
    return JSON.parse(document.body.getAttribute('hx-headers') || '{}')['X-CSRFToken'] || ''
  } catch (e) {
    return ''
  }
}

export async function postJson (url, body = {}) {
  const response = await fetch(url, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRFToken': csrfToken(), Accept: 'application/json' },
    body: JSON.stringify(body)
  })
  let data = {}
  try { data = await response.json() } catch (e) { data = {} }
  if (!response.ok) {
    const error = new Error(data.error || `The server answered ${response.status}.`)
    error.status = response.status
    throw error
  }
  return data
}

// The figures of one peer connection: round trip, inbound video and audio, loss, bitrate.
export async function readStats (pc) {
  const report = await pc.getStats()
  const figures = { rtt: null, framesDecoded: 0, audioBytes: 0, videoBytes: 0, packetsLost: 0, packetsReceived: 0, fps: null, at: performance.now() }
  let pairId = null
  report.forEach(s => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId })
  report.forEach(s => {
    if (s.type === 'candidate-pair' && (s.id === pairId || (!pairId && s.nominated && s.state === 'succeeded'))) {
      if (typeof s.currentRoundTripTime === 'number') figures.rtt = s.currentRoundTripTime
    }
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      figures.framesDecoded += s.framesDecoded || 0
      figures.videoBytes += s.bytesReceived || 0
      figures.packetsLost += s.packetsLost || 0
      figures.packetsReceived += s.packetsReceived || 0
      if (typeof s.framesPerSecond === 'number') figures.fps = s.framesPerSecond
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      figures.audioBytes += s.bytesReceived || 0
      figures.packetsLost += s.packetsLost || 0
      figures.packetsReceived += s.packetsReceived || 0
    }
  })
  if (figures.rtt === null) {
    report.forEach(s => { if (s.type === 'remote-inbound-rtp' && typeof s.roundTripTime === 'number') figures.rtt = s.roundTripTime })
  }
  return figures
}

export function waitFor (predicate, timeoutMs, stepMs = 100) {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const tick = async () => {
      let value
      try { value = await predicate() } catch (e) { value = null }
      if (value) return resolve(value)
      if (performance.now() - started > timeoutMs) return reject(new Error('timeout'))
      window.setTimeout(tick, stepMs)
    }
    tick()
  })
}
