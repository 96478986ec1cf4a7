"""``manage.py import_saliency (DIR | --compute MODEL)``: saliency maps for the reference images."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from learning.saliency import model_names
from webapp.stimuli.models import ReferenceImage
from webapp.stimuli.saliency import SaliencyImportError, attach_maps, compute_maps


class Command(BaseCommand):
    help = ("Attach saliency maps written by `python -m learning saliency` (matched by file stem), or "
            "compute them with a learning.saliency model. Shown on the experiment dashboard.")

    def add_arguments(self, parser):
        parser.add_argument("directory", nargs="?", help="folder of 16-bit (or 8-bit) PNG maps")
        parser.add_argument("--model", default="", help="name of the model that made the maps in DIR")
        parser.add_argument("--compute", choices=model_names(), help="compute maps instead of reading DIR")
        parser.add_argument("--msroi-weights", help="local torchvision state dict for --compute msroi")
        parser.add_argument("--missing-only", action="store_true",
                            help="with --compute: skip references with maps")

    def handle(self, *args, **o):
        if bool(o["directory"]) == bool(o["compute"]):
            raise CommandError("give either a DIR of maps or --compute MODEL")
        try:
            if o["compute"]:
                refs = ReferenceImage.objects.order_by("id")
                if o["missing_only"]:
                    refs = refs.filter(saliency="")
                n = compute_maps(list(refs), o["compute"], o["msroi_weights"],
                                 progress=lambda xs: tqdm(xs, desc="saliency", unit="img"))
            else:
                n = attach_maps(o["directory"], o["model"] or "imported")
        except SaliencyImportError as exc:
            raise CommandError(f"{exc} (nothing was stored)") from exc
        self.stdout.write(f"stored saliency maps for {n} reference image(s)")
