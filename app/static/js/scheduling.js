// Scheduling pages show times in the viewer's time zone. Only the browser knows it, so this
// module stores it in a cookie the server reads; when the page was drawn in another zone, the
// week of times (or the board) is fetched again with htmx, once.
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone

if (zone && /^[A-Za-z0-9_+\-/]{1,64}$/.test(zone)) {
  document.cookie = `verity_tz=${zone}; path=/; max-age=31536000; samesite=lax`
  const week = document.getElementById('week')
  if (week && week.dataset.zone && week.dataset.zone !== zone && window.htmx) {
    window.htmx.ajax('GET', week.dataset.refreshUrl, { target: '#week', swap: 'outerHTML' })
  }
}
