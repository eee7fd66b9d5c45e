// Verity's page script: starts the design system's components. Loaded as a module, so it runs
// after the document is parsed; no inline script anywhere (the CSP forbids it).
import { initAll } from '../vendor/nhsuk-frontend/nhsuk-frontend.min.js'

document.body.classList.add('js-enabled', 'nhsuk-frontend-supported')
initAll()

// A questionnaire's questions re-render as answers change (htmx posts the form, the server sends the
// questions back). A re-render asked for before the person's latest tick must not land over it: it
// would untick the answer they just gave. Each request remembers the choices it carried; a response
// whose choices are no longer the form's is dropped, as the newer tick sent its own request.
// (Typed text is safe either way: text fields carry hx-preserve.)
function choicesOf (form) {
  return Array.from(form.querySelectorAll('input[type=radio], input[type=checkbox], select'))
    .map((field) => field.tagName === 'SELECT' ? `${field.name}=${field.value}` : `${field.name}:${field.value}=${field.checked}`)
    .join('&')
}

function questionsForm () {
  const fields = document.getElementById('intake-fields')
  return fields ? fields.closest('form') : null
}

document.body.addEventListener('htmx:beforeRequest', (event) => {
  const form = questionsForm()
  if (form && event.detail.target && event.detail.target.id === 'intake-fields') {
    event.detail.requestConfig.verityChoices = choicesOf(form)
  }
})

document.body.addEventListener('htmx:beforeSwap', (event) => {
  const sent = event.detail.requestConfig && event.detail.requestConfig.verityChoices
  const form = questionsForm()
  if (sent !== undefined && form && choicesOf(form) !== sent) {
    event.detail.shouldSwap = false
  }
})
