// Passkeys (WebAuthn) for staff: adding one on the security page, and using one at sign-in and for a
// step-up (app/auth/templates/auth/_passkey.html). Loaded on every staff page; it finds its controls by
// delegation, so a control htmx swaps in later (the consultation panel's "Sign with your passkey") works
// too. The server's options come as JSON with base64url strings where the browser wants bytes; the
// browser's answer goes back the other way.

const UNSUPPORTED = 'This browser cannot use passkeys. Use a code from your authenticator app instead.'
const WORKING = 'Follow the instructions from your browser or device…'

function csrfToken () {
  try {
    return JSON.parse(document.body.getAttribute('hx-headers') || '{}')['X-CSRFToken'] || ''
  } catch (e) {
    return ''
  }
}

function toBytes (text) {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/')
  const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4))
  return Uint8Array.from(binary, (c) => c.charCodeAt(0)).buffer
}

function toText (buffer) {
  let binary = ''
  for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

function supported () {
  return typeof window.PublicKeyCredential === 'function' && !!navigator.credentials &&
    typeof navigator.credentials.create === 'function' && typeof navigator.credentials.get === 'function'
}

// What the person should read when the browser refuses or they cancel.
function explain (error, creating) {
  switch (error && error.name) {
    case 'NotAllowedError':
    case 'AbortError':
      return 'The passkey request was cancelled or timed out. Try again when you are ready.'
    case 'InvalidStateError':
      return creating ? 'This device already has a passkey for your account.' : 'Your passkey could not be used. Try again.'
    case 'SecurityError':
      return 'Passkeys cannot be used at this web address. Open Verity at its usual address and try again.'
    case 'NotSupportedError':
      return UNSUPPORTED
    default:
      return 'Your passkey could not be used. Try again, or use a code from your authenticator app.'
  }
}

async function postJson (url, body) {
  const response = await fetch(url, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRFToken': csrfToken(), Accept: 'application/json' },
    body: JSON.stringify(body)
  })
  let data = {}
  try { data = await response.json() } catch (e) { data = {} }
  if (!response.ok && !data.error) data.error = 'Something went wrong. Reload the page and try again.'
  return { ok: response.ok, data }
}

function say (status, text) {
  if (status) status.textContent = text
}

function creationOptions (options) {
  return {
    ...options,
    challenge: toBytes(options.challenge),
    user: { ...options.user, id: toBytes(options.user.id) },
    excludeCredentials: (options.excludeCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) }))
  }
}

function requestOptions (options) {
  return {
    ...options,
    challenge: toBytes(options.challenge),
    allowCredentials: (options.allowCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) }))
  }
}

function credentialJson (credential, response) {
  return {
    id: credential.id,
    rawId: toText(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
    clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
    response
  }
}

// Adding a passkey: name it, create it, send it; the server answers with where to go next.
async function register (form) {
  const status = form.querySelector('[data-passkey-status]')
  const button = form.querySelector('button[type=submit]')
  if (!supported()) return say(status, UNSUPPORTED)
  const name = form.querySelector('[name=name]').value.trim()
  if (!name) {
    say(status, 'Give the passkey a name, like “Work laptop”.')
    form.querySelector('[name=name]').focus()
    return
  }
  button.disabled = true
  try {
    say(status, WORKING)
    const begun = await postJson(form.dataset.passkeyOptions, {})
    if (!begun.ok) {
      if (begun.data.location) return window.location.assign(begun.data.location)
      return say(status, begun.data.error)
    }
    let credential
    try {
      credential = await navigator.credentials.create({ publicKey: creationOptions(begun.data) })
    } catch (error) {
      return say(status, explain(error, true))
    }
    if (!credential) return say(status, explain(null, true))
    const answer = credential.response
    const finished = await postJson(form.action, {
      name,
      credential: credentialJson(credential, {
        clientDataJSON: toText(answer.clientDataJSON),
        attestationObject: toText(answer.attestationObject),
        transports: answer.getTransports ? answer.getTransports() : []
      })
    })
    if (!finished.ok) {
      if (finished.data.location) return window.location.assign(finished.data.location)
      return say(status, finished.data.error)
    }
    window.location.assign(finished.data.location)
  } catch (error) {
    say(status, 'Verity could not be reached. Check your connection and try again.')
  } finally {
    button.disabled = false
  }
}

// Using a passkey: the answer goes into the surrounding form, which is then sent as the page sends it
// (a normal post, or htmx in the consultation panel).
async function assert (box, button) {
  const status = box.querySelector('[data-passkey-status]')
  const form = box.closest('form')
  if (!supported()) return say(status, UNSUPPORTED)
  button.disabled = true
  let submitted = false
  try {
    say(status, WORKING)
    const begun = await postJson(box.dataset.passkeyOptions, { purpose: box.dataset.passkeyPurpose })
    if (!begun.ok) return say(status, begun.data.error)
    let credential
    try {
      credential = await navigator.credentials.get({ publicKey: requestOptions(begun.data) })
    } catch (error) {
      return say(status, explain(error, false))
    }
    if (!credential) return say(status, explain(null, false))
    const answer = credential.response
    box.querySelector('[name=passkey_assertion]').value = JSON.stringify(credentialJson(credential, {
      clientDataJSON: toText(answer.clientDataJSON),
      authenticatorData: toText(answer.authenticatorData),
      signature: toText(answer.signature),
      userHandle: answer.userHandle ? toText(answer.userHandle) : undefined
    }))
    say(status, 'Checking your passkey…')
    submitted = true
    form.requestSubmit()
  } catch (error) {
    say(status, 'Verity could not be reached. Check your connection and try again.')
  } finally {
    if (!submitted) button.disabled = false
  }
}

document.addEventListener('submit', (event) => {
  const form = event.target
  if (form instanceof HTMLFormElement && form.matches('[data-passkey-register]')) {
    event.preventDefault()
    register(form)
  }
})

document.addEventListener('click', (event) => {
  const button = event.target instanceof Element ? event.target.closest('[data-passkey-get]') : null
  const box = button ? button.closest('[data-passkey]') : null
  if (box && !button.disabled) {
    event.preventDefault()
    assert(box, button)
  }
})

// A form htmx sent with a passkey answer that the server refused outright (too many attempts, a lost
// connection): htmx swaps nothing, so make the button usable again and drop the spent answer, which would
// otherwise go with a code typed next.
document.addEventListener('htmx:afterRequest', (event) => {
  const form = event.detail && event.detail.elt
  const box = form instanceof Element ? form.querySelector('[data-passkey]') : null
  if (!box || event.detail.successful) return
  box.querySelector('[name=passkey_assertion]').value = ''
  box.querySelector('[data-passkey-get]').disabled = false
  const status = event.detail.xhr && event.detail.xhr.status
  say(box.querySelector('[data-passkey-status]'), status === 429
    ? 'Too many attempts. Wait a few minutes, then try again.'
    : 'Your passkey could not be checked. Try again, or use a code from your authenticator app.')
})

// Say so up front when this browser has no passkey support, rather than after a click.
if (!supported()) {
  for (const status of document.querySelectorAll('[data-passkey] [data-passkey-status]')) say(status, UNSUPPORTED)
}
