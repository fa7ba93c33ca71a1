"""Built-in models; importing this package registers them."""

import segzoo.models.fcn  # noqa: E402,F401
import segzoo.models.mask_rcnn  # noqa: E402,F401
import segzoo.models.unet  # noqa: E402,F401
