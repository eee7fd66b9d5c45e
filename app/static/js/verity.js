// Verity's page script: starts the design system's components. Loaded as a module, so it runs
// after the document is parsed; no inline script anywhere (the CSP forbids it).
import { initAll } from '../vendor/nhsuk-frontend/nhsuk-frontend.min.js'

document.body.classList.add('js-enabled', 'nhsuk-frontend-supported')
initAll()
