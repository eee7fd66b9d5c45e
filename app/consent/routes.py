from flask import Blueprint

bp = Blueprint("consent", __name__, template_folder="templates")
