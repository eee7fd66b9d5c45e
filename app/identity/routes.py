from flask import Blueprint

bp = Blueprint("identity", __name__, template_folder="templates")
