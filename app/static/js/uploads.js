// Document uploads: every [data-upload] control (app/documents/templates/documents/_upload.html)
// sends the chosen file at once, in chunks, through the protocol in app/documents/routes.py.
//
// - a <progress> bar and a percentage while it goes;
// - a dropped connection or a server hiccup is retried on its own (with growing pauses, and at
//   once when the browser says it is back online), resuming from the bytes the server has;
// - after a page reload the upload id is still in sessionStorage: choosing the same file again
//   carries on where it stopped;
// - the server's refusal ("This photo looks blurred. ...") appears next to the control, in the
//   design system's error message, and the camera button is offered for a retake.
//
// Without this script the same inputs post the file in the page's ordinary form.

const STORE_PREFIX = 'verity-upload:'
const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000, 30000, 30000, 30000, 60000, 60000]
const CHUNK_TIMEOUT_MS = 120000
const COMPLETE_TIMEOUT_MS = 300000

class Refusal extends Error {
  constructor (message, { code = '', retake = false } = {}) {
    super(message)
    this.code = code
    this.retake = retake
  }
}

class Transient extends Error {}

class Gone extends Error {}

function csrfToken () {
  try {
    return JSON.parse(document.body.getAttribute('hx-headers') || '{}')['X-CSRFToken'] || ''
  } catch {
    return ''
  }
}

function megabytes (bytes) {
  return `${(bytes / 1000000).toFixed(bytes < 10000000 ? 1 : 0)} MB`
}

function wait (ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('online', () => { clearTimeout(timer); resolve() }, { once: true })
  })
}

// One HTTP exchange with JSON back. Network failures, time-outs and 5xx are Transient (retry);
// 401/403/404/410 mean the upload (or the session) is gone; 413/422 are the server's refusals.
function exchange (method, url, { body = null, headers = {}, timeout = 30000, onProgress = null } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open(method, url)
    xhr.timeout = timeout
    xhr.setRequestHeader('Accept', 'application/json')
    xhr.setRequestHeader('X-CSRFToken', csrfToken())
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value)
    if (onProgress && xhr.upload) xhr.upload.addEventListener('progress', (event) => onProgress(event.loaded))
    xhr.addEventListener('load', () => {
      let data = {}
      try { data = JSON.parse(xhr.responseText || '{}') } catch { data = {} }
      const status = xhr.status
      if (status >= 200 && status < 300) return resolve({ status, data })
      if (status === 409) return resolve({ status, data })
      if (status === 401) return reject(new Refusal('Your session has ended. Sign in again, then choose the file again to carry on.', { code: 'signed_out' }))
      if ([403, 404, 410].includes(status)) return reject(new Gone(data.error || 'This upload is no longer available.'))
      if (status === 413 || status === 422 || status === 400) {
        return reject(new Refusal(data.error || data.detail || 'The file could not be accepted. Choose another file.', data))
      }
      reject(new Transient(`HTTP ${status}`))
    })
    xhr.addEventListener('error', () => reject(new Transient('network')))
    xhr.addEventListener('timeout', () => reject(new Transient('timeout')))
    xhr.addEventListener('abort', () => reject(new Transient('aborted')))
    xhr.send(body)
  })
}

class UploadControl {
  constructor (root) {
    this.root = root
    this.inputs = Array.from(root.querySelectorAll('input[type="file"]'))
    this.camera = root.querySelector('.verity-upload__camera-input')
    this.error = root.querySelector('[data-upload-error]')
    this.errorText = root.querySelector('[data-upload-error-text]')
    this.progressBox = root.querySelector('[data-upload-progress]')
    this.progress = this.progressBox.querySelector('progress')
    this.status = root.querySelector('[data-upload-status]')
    this.result = root.querySelector('[data-upload-result]')
    this.storeKey = STORE_PREFIX + (root.dataset.uploadKey || root.id)
    this.maxBytes = Number(root.dataset.maxBytes || 0)
    this.maxLabel = root.dataset.maxLabel || ''
    this.busy = false
    this.online = new EventTarget()
    window.addEventListener('online', () => this.online.dispatchEvent(new Event('online')))
    for (const input of this.inputs) input.addEventListener('change', () => this.chosen(input))
    const form = root.closest('form')
    if (form) {
      for (const button of form.querySelectorAll('[data-upload-fallback]')) button.hidden = true
      form.addEventListener('submit', (event) => {
        // Files go through the chunked upload; a form that only carries them has nothing to post.
        if (form.querySelector('[data-upload-fallback]')) event.preventDefault()
      })
    }
    this.offerResume()
  }

  // What the person chose -------------------------------------------------------------------

  chosen (input) {
    const file = input.files && input.files[0]
    if (!file || this.busy) return
    this.clearError()
    if (file.size === 0) return this.fail(new Refusal('The selected file is empty. Choose the file that has your document in it.'))
    if (this.maxBytes && file.size > this.maxBytes) {
      return this.fail(new Refusal(`The selected file must be smaller than ${this.maxLabel}. If it is a scan, scan it again at a lower resolution, or send it as separate pages.`))
    }
    const kind = this.kind()
    if (!kind) return this.fail(new Refusal('Select what kind of document this is, then choose the file again.'))
    this.run(file, kind)
  }

  kind () {
    if (this.root.dataset.kind) return this.root.dataset.kind
    const form = this.root.closest('form')
    const field = form && this.root.dataset.kindField ? form.elements.namedItem(this.root.dataset.kindField) : null
    return field ? field.value : ''
  }

  // The upload ------------------------------------------------------------------------------

  async run (file, kind, restarted = false) {
    this.busy = true
    this.root.classList.remove('verity-upload--done')
    this.setDisabled(true)
    this.showProgress(0, file.size)
    try {
      let state = await this.resumable(file)
      if (!state) state = await this.retrying(() => this.create(file, kind))
      let offset = state.offset
      while (offset < file.size) {
        offset = await this.retrying(() => this.sendChunk(state, file, offset))
      }
      this.say('Checking your file…')
      const done = await this.retrying(() => this.complete(state, file))
      this.forget()
      this.succeed(done.document)
    } catch (error) {
      if (error instanceof Gone && !restarted) {
        // The upload expired or ended on the server: start it again from the beginning, once.
        this.forget()
        this.busy = false
        return this.run(file, kind, true)
      }
      this.fail(error)
    } finally {
      this.busy = false
      this.setDisabled(false)
    }
  }

  async create (file, kind) {
    const body = new URLSearchParams({ kind, filename: file.name, size: String(file.size) })
    if (this.root.dataset.patientId) body.set('patient_id', this.root.dataset.patientId)
    if (this.root.dataset.requestId) body.set('request_id', this.root.dataset.requestId)
    let data
    try {
      ({ data } = await exchange('POST', this.root.dataset.createUrl, { body }))
    } catch (error) {
      if (error instanceof Gone) throw new Refusal('You cannot upload documents here. Reload the page and try again.')
      throw error
    }
    const state = {
      id: data.id,
      offset: data.offset,
      chunkBytes: data.chunk_bytes,
      statusUrl: data.status_url,
      chunkUrl: data.chunk_url,
      completeUrl: data.complete_url,
      name: file.name,
      size: file.size,
      lastModified: file.lastModified
    }
    this.remember(state)
    return state
  }

  async sendChunk (state, file, offset) {
    const end = Math.min(offset + state.chunkBytes, file.size)
    const { status, data } = await exchange('POST', state.chunkUrl, {
      body: file.slice(offset, end),
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `bytes ${offset}-${end - 1}/${file.size}` },
      timeout: CHUNK_TIMEOUT_MS,
      onProgress: (loaded) => this.showProgress(offset + loaded, file.size)
    })
    // 200: the bytes are in; 409: the server already had them (or fewer): either way, go from its offset.
    const reached = Number(data.offset)
    if (status === 409) this.say('Carrying on from where the upload stopped…')
    this.showProgress(reached, file.size)
    return reached
  }

  async complete (state, file) {
    const { status, data } = await exchange('POST', state.completeUrl, { timeout: COMPLETE_TIMEOUT_MS })
    if (status === 409) {
      // Bytes went missing (a retry raced a lost answer): send from where the server stands.
      let offset = Number(data.offset)
      while (offset < file.size) offset = await this.retrying(() => this.sendChunk(state, file, offset))
      return this.complete(state, file)
    }
    return data
  }

  // Retries after network failures: growing pauses, cut short when the browser comes back online.
  async retrying (step) {
    for (let attempt = 0; ; attempt++) {
      try {
        const outcome = await step()
        if (attempt > 0) this.say('Connection back. Sending…')
        return outcome
      } catch (error) {
        if (!(error instanceof Transient) || attempt >= RETRY_DELAYS_MS.length) throw error
        this.say(navigator.onLine === false
          ? 'You are offline. The upload will carry on when your connection is back.'
          : 'The connection was interrupted. Trying again…')
        await wait(RETRY_DELAYS_MS[attempt], this.online)
      }
    }
  }

  // Resuming after a reload: the upload id is kept for this tab ------------------------------

  remember (state) {
    try { sessionStorage.setItem(this.storeKey, JSON.stringify(state)) } catch { /* private mode: no resume */ }
  }

  forget () {
    try { sessionStorage.removeItem(this.storeKey) } catch { /* nothing to forget */ }
  }

  saved () {
    try { return JSON.parse(sessionStorage.getItem(this.storeKey) || 'null') } catch { return null }
  }

  async resumable (file) {
    const saved = this.saved()
    if (!saved || saved.name !== file.name || saved.size !== file.size || saved.lastModified !== file.lastModified) {
      return null
    }
    try {
      const { data } = await this.retrying(() => exchange('GET', saved.statusUrl))
      if (data.status !== 'open') return null
      saved.offset = Number(data.offset)
      return saved
    } catch (error) {
      if (error instanceof Gone) return null
      throw error
    }
  }

  async offerResume () {
    const saved = this.saved()
    if (!saved) return
    try {
      const { data } = await exchange('GET', saved.statusUrl)
      if (data.status !== 'open' || Number(data.offset) >= saved.size) return
      this.showProgress(Number(data.offset), saved.size)
      this.say(`Your upload of “${saved.name}” stopped at ${Math.floor(100 * data.offset / saved.size)}%. ` +
        'Choose the same file again to carry on from there.')
    } catch (error) {
      if (error instanceof Gone) this.forget()
    }
  }

  // What the person sees --------------------------------------------------------------------

  showProgress (loaded, total) {
    const percent = total ? Math.min(100, Math.floor(100 * loaded / total)) : 0
    this.progressBox.hidden = false
    this.progress.value = percent
    this.progress.textContent = `${percent}%`
    this.say(`Sending: ${percent}% (${megabytes(loaded)} of ${megabytes(total)})`)
  }

  say (message) {
    this.status.replaceChildren(document.createTextNode(message))
  }

  setDisabled (disabled) {
    for (const input of this.inputs) input.disabled = disabled
  }

  clearInputs () {
    for (const input of this.inputs) {
      input.value = ''
      input.dispatchEvent(new Event('change')) // lets the design system's picker show "No file chosen"
    }
  }

  clearError () {
    this.root.classList.remove('nhsuk-form-group--error')
    this.error.hidden = true
    this.errorText.textContent = ''
    this.error.removeAttribute('role')
  }

  fail (error) {
    const message = (error instanceof Refusal || error instanceof Gone) ? error.message
      : 'The upload could not finish because the connection kept failing. Check your connection, then choose the file again: it carries on where it stopped.'
    if (error instanceof Refusal) this.forget()
    this.root.classList.add('nhsuk-form-group--error')
    this.errorText.textContent = message
    this.error.hidden = false
    this.error.setAttribute('role', 'alert')
    this.progressBox.hidden = true
    this.say('')
    this.clearInputs()
    if (error.retake && this.camera && getComputedStyle(this.camera.parentElement).display !== 'none') {
      const label = this.root.querySelector('.verity-upload__camera-button')
      if (label) label.textContent = 'Take the photo again'
    }
  }

  succeed (document_) {
    this.progress.value = 100
    this.root.classList.add('verity-upload--done')
    const link = document.createElement('a')
    link.href = document_.url
    link.textContent = 'View it'
    this.status.replaceChildren(document.createTextNode(`Uploaded: ${document_.filename}. `), link)
    if (this.result) this.result.value = String(document_.id)
    this.clearInputs()
    this.root.dispatchEvent(new CustomEvent('verity:document-uploaded', { bubbles: true, detail: document_ }))
    const url = this.root.dataset.refreshUrl
    const target = this.root.dataset.refreshTarget
    if (url && target && window.htmx && document.querySelector(target)) {
      window.htmx.ajax('GET', url, { target, swap: 'outerHTML' })
    }
    if (this.root.dataset.requestId) {
      const card = this.root.closest('[data-request]')
      const form = this.root.closest('form')
      if (card && form) {
        const thanks = document.createElement('p')
        thanks.className = 'nhsuk-body verity-request__done'
        thanks.append(document.createTextNode(`Thank you: your ${document_.kind_label.toLowerCase()} has been sent to the clinic. `), link.cloneNode(true))
        form.replaceWith(thanks)
      }
    }
  }
}

function start (scope) {
  for (const root of scope.querySelectorAll('[data-upload]')) {
    if (root.verityUpload) continue
    root.verityUpload = new UploadControl(root)
  }
}

start(document)
document.addEventListener('htmx:load', (event) => start(event.target))
