// The standalone "check your camera and microphone" page.
import { setUpPrecall } from './consult-precall.js'

setUpPrecall(document)
