// The clinician's side panel: tabs that only show and hide their sections (so nothing typed is lost),
// and a viewer that opens an image document over the panel without leaving the call.
const panel = document.getElementById('panel')

if (panel) {
  const tabs = [...panel.querySelectorAll('[data-tab]')]
  for (const tab of tabs) {
    tab.addEventListener('click', () => {
      for (const other of tabs) {
        const chosen = other === tab
        other.setAttribute('aria-pressed', String(chosen))
        const section = document.getElementById(other.dataset.tab)
        if (section) section.hidden = !chosen
      }
    })
  }

  const viewer = document.getElementById('document-viewer')
  const image = document.getElementById('document-viewer-image')
  panel.addEventListener('click', event => {
    const link = event.target.closest('a[data-viewer-src]')
    if (!link || !viewer || typeof viewer.showModal !== 'function') return
    event.preventDefault()
    image.src = link.dataset.viewerSrc
    image.alt = link.dataset.viewerTitle || 'Document'
    document.getElementById('document-viewer-title').textContent = link.dataset.viewerTitle || 'Document'
    viewer.showModal()
  })
  document.getElementById('document-viewer-close').addEventListener('click', () => viewer.close())
  if (viewer) viewer.addEventListener('close', () => { image.removeAttribute('src') })
}
