// The idle warning: a little before a signed-in session would end for inactivity, a dialog offers
// "Stay signed in" and "Sign out"; when the time runs out the page goes to the sign-in page (where the
// server says why). The server is the authority (app/auth/session_routes.py): this script only reads
// the time left, from the page (data-remaining) and from /auth/session, which does not extend it.
//
// No polling: one timer to the warning, a check of the real time left then (the person may have been
// at work in another tab), a check when the tab comes back to the front, and a timer to the end.
// A page holding a live camera or microphone stream (a video consultation), or marked with
// data-session-keepalive, counts as the person at work: it stays signed in without asking.
const dialog = document.getElementById('session-timeout')

if (dialog && typeof dialog.showModal === 'function') {
  const statusUrl = dialog.dataset.statusUrl
  const signInUrl = dialog.dataset.signInUrl
  const warningMs = Number(dialog.dataset.warning) * 1000
  const countdown = dialog.querySelector('[data-session-countdown]')
  const extendForm = dialog.querySelector('form[data-session-extend]')
  let deadline = Date.now() + Number(dialog.dataset.remaining) * 1000
  let timer = null
  let ticker = null
  let lastCheck = 0
  let leaving = false

  const clearTimers = () => {
    window.clearTimeout(timer)
    window.clearInterval(ticker)
    timer = null
    ticker = null
  }

  const signedOut = () => {
    if (leaving) return
    leaving = true
    clearTimers()
    window.location.assign(signInUrl)
  }

  const describe = (ms) => {
    const seconds = Math.max(0, Math.ceil(ms / 1000))
    if (seconds >= 120) return `${Math.ceil(seconds / 60)} minutes`
    if (seconds >= 60) return seconds === 60 ? '1 minute' : `1 minute ${seconds - 60} seconds`
    return seconds === 1 ? '1 second' : `${seconds} seconds`
  }

  const pageIsBusy = () => {
    if (document.querySelector('[data-session-keepalive]')) return true
    return Array.from(document.querySelectorAll('video, audio')).some((media) => {
      const stream = media.srcObject
      return stream && typeof stream.getTracks === 'function' &&
        stream.getTracks().some((track) => track.readyState === 'live')
    })
  }

  const closeDialog = () => {
    window.clearInterval(ticker)
    ticker = null
    if (dialog.open) dialog.close()
  }

  // Wait for the warning point, or show the warning and wait for the end.
  const schedule = () => {
    clearTimers()
    const left = deadline - Date.now()
    if (left > warningMs) {
      closeDialog()
      timer = window.setTimeout(check, left - warningMs)
      return
    }
    if (pageIsBusy()) {
      extend()
      return
    }
    if (!dialog.open) dialog.showModal()
    const tick = () => { countdown.textContent = describe(deadline - Date.now()) }
    tick()
    ticker = window.setInterval(tick, 1000)
    // At the end ask once more: "Stay signed in" in another tab would have moved the deadline on.
    timer = window.setTimeout(check, Math.max(0, left))
  }

  const answered = async (response) => {
    if (!response.ok || response.redirected) {
      signedOut()
      return
    }
    const body = await response.json()
    deadline = Date.now() + body.remaining_seconds * 1000
    if (body.remaining_seconds <= 0) {
      // The last second of the session: its end is a moment away.
      clearTimers()
      timer = window.setTimeout(check, 1000)
      return
    }
    schedule()
  }

  async function check () {
    lastCheck = Date.now()
    try {
      await answered(await fetch(statusUrl, {
        headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store'
      }))
    } catch (error) {
      // Offline for a moment: keep the deadline we know and look again shortly.
      timer = window.setTimeout(check, 5000)
    }
  }

  async function extend () {
    const token = extendForm.querySelector('input[name=csrf_token]').value
    try {
      await answered(await fetch(extendForm.action, {
        method: 'POST',
        headers: { Accept: 'application/json', 'X-CSRFToken': token },
        credentials: 'same-origin',
        cache: 'no-store'
      }))
    } catch (error) {
      extendForm.submit() // the plain form posts and comes back to this page
    }
  }

  extendForm.addEventListener('submit', (event) => {
    event.preventDefault()
    extend()
  })
  // Escape closes a modal dialog: the person is plainly here, so it counts as "Stay signed in".
  dialog.addEventListener('cancel', (event) => {
    event.preventDefault()
    extend()
  })
  const recheck = () => {
    if (document.visibilityState === 'visible' && !leaving && Date.now() - lastCheck > 5000) check()
  }
  document.addEventListener('visibilitychange', recheck)
  window.addEventListener('focus', recheck)

  schedule()
}
